"""One run of a recipe: teacher -> students (initialise, distil, export) -> evaluate -> results.

Everything that can be wrong with the input is checked before any work starts. Every
finished piece is written atomically, so `resume=True` continues a killed run: the teacher
comes from its cache, finished students from their exported folders, and an unfinished
student from its last checkpoint.
"""

from __future__ import annotations

import copy
import math
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import torch
from accelerate import Accelerator
from rich.console import Console
from rich.table import Table
from safetensors.torch import load_file
from torch import nn
from transformers import AutoModel, set_seed

from bequest import __version__
from bequest.config import RunConfig, StudentConfig, dump_config
from bequest.config import load_config as load_recipe
from bequest.data.corpus import Segments, load_segments, split_segments
from bequest.data.features import Encoded, inference_batches, model_inputs, subsample
from bequest.data.task_data import TaskData, load_task_data
from bequest.data.tasks import TaskSpec, get_task
from bequest.errors import BequestError
from bequest.eval.evaluate import evaluate
from bequest.eval.predict import latencies_ms
from bequest.export import read_record, write_model_card, write_record
from bequest.init.etd import check_extract, extract_student, target_shape
from bequest.init.extract import axis_labels
from bequest.init.layers import init_student, select_layers
from bequest.init.sps import share_layers, unroll
from bequest.init.wid import UPDATES, Compacting, wid_shape
from bequest.io import (
    building_dir,
    check_writable,
    tensor_bytes,
    write_json,
    write_text,
)
from bequest.models.arch import ffn_attribute
from bequest.models.capture import projections
from bequest.models.loading import (
    count_parameters,
    load_config,
    load_encoder,
    load_task_model,
    load_tokenizer,
    max_tokens,
    task_model_class,
)
from bequest.models.outputs import output_logits
from bequest.objectives.terms import build_terms, ptp_thresholds
from bequest.run_dir import (
    RECIPE_FILE,
    check_checkpoint,
    is_run_dir,
    latest_checkpoint,
    leftovers,
    remove_paths,
    write_marker,
)
from bequest.train.distiller import Distiller
from bequest.train.loop import train
from bequest.train.runtime import finish_trackers, make_accelerator, resolved_precision
from bequest.train.teacher import (
    cache_root,
    label_maps,
    load_teacher,
    prepare_teacher,
    scoring_settings,
    teacher_logits,
)
from bequest.train.teacher_outputs import cache_teacher_outputs, teacher_reads

console = Console(stderr=True)


@dataclass
class Run:
    """What every step of a run shares. A task run has `task` and `dev`; a corpus run has `heldout`."""

    config: RunConfig
    tokenizer: object
    accelerator: Accelerator
    train: Encoded | Segments
    file_hashes: dict[str, str]
    task: TaskSpec | None = None
    dev: dict[str, Encoded] | None = None
    heldout: Segments | None = None

    @property
    def dir(self) -> Path:
        return self.config.run_dir

    @property
    def pad(self) -> int:
        return self.tokenizer.pad_token_id

    @property
    def auto_class(self):
        return task_model_class(self.task) if self.task else AutoModel

    def score(self, model: nn.Module) -> dict[str, float]:
        """Dev-set metrics of a task model."""
        return evaluate(model, self.task, self.dev, self.config.eval.batch_size, self.pad, self.config.qa)

    def evaluate_stage(self, distiller: nn.Module) -> dict[str, float]:
        """Per-epoch evaluation: dev metrics of the student on a task, else the held-out distillation loss."""
        distiller = self.accelerator.unwrap_model(distiller)
        if self.task:
            return self.score(distiller.student)
        return {"heldout_loss": heldout_loss(distiller, self.heldout, self.config.eval.batch_size, self.pad)}


@torch.no_grad()
def heldout_loss(distiller: Distiller, data: Segments, batch_size: int, pad_token_id: int) -> float:
    """The stage's loss on held-out text, without dropout: the task-agnostic progress measure.

    Its own fixed random stream makes MLM mask the same tokens at every evaluation and leaves the
    training stream untouched."""
    was_training = distiller.training
    distiller.eval()
    device = next(distiller.parameters()).device
    total = 0.0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), distiller.live_teacher():
        torch.manual_seed(0)
        for indices in inference_batches(data.lengths, batch_size):
            batch = {k: v.to(device) for k, v in data.batch(indices, pad_token_id).items()}
            total += distiller(batch).item() * len(indices)
    distiller.train(was_training)
    return total / len(data)


def prepare_run_dir(config: RunConfig, resume: bool, overwrite: bool, file_hashes: dict[str, str],
                    accelerator: Accelerator) -> None:
    """Refuse to touch an existing directory unless asked, and never delete what bequest did not write.

    Every process checks (the same files, so the same answer, and every process exits on a refusal);
    only the main process deletes, once all have looked, and marks a new run directory as bequest's."""
    doomed = leftovers(config.run_dir, dump_config(config), [s.name for s in config.students], file_hashes, resume, overwrite)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        remove_paths(doomed)
        if not resume:
            config.run_dir.mkdir(parents=True, exist_ok=True)
            write_marker(config.run_dir, dump_config(config), [s.name for s in config.students])
    accelerator.wait_for_everyone()


@dataclass
class Inputs:
    run: Run
    teacher: nn.Module
    teacher_has_head: bool


def student_config(teacher: nn.Module, student: StudentConfig):
    """The config the student will have: a pretrained student's own, else the teacher's with fewer
    layers (and, when extracted, narrower)."""
    if student.model:
        config = copy.deepcopy(load_config(student.model))
        config.num_hidden_layers *= 2 if student.sps else 1
        return config
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = student.layers or config.num_hidden_layers
    if student.extract:
        config.hidden_size, config.num_attention_heads, neurons = target_shape(teacher.config, student.extract)
        setattr(config, ffn_attribute(config.model_type), neurons)
    if student.sps:
        config.num_hidden_layers *= 2
    return config


def check_student(student: StudentConfig, teacher: nn.Module, teacher_name: str, tokenizer_name: str, tokenizer,
                  task: str | None) -> None:
    depth = teacher.config.num_hidden_layers
    if student.model:
        load_tokenizer(tokenizer_name, load_config(student.model), student.model)  # same vocabulary as the teacher's
    else:
        select_layers("lower" if student.init == "random" else student.init, student.layers or depth, depth)
    if student.extract:
        check_extract(student.extract, teacher, tokenizer, task is not None)
    if student.wid:
        wid_shape(teacher.config, student.wid)
        axis_labels(teacher)  # refuses architectures whose parameters we cannot label
    for stage in student.all_stages():
        terms = build_terms(stage.objectives, student_config(teacher, student), teacher.config, tokenizer, teacher_name, task)
        if any(term.attention for _, term in terms.values()):
            projections(teacher)  # refuses architectures whose attention we cannot read


def check_models(config: RunConfig) -> tuple[object, nn.Module, bool]:
    """Check every model-side input before any work: writable folders, teacher, tokenizer, lengths and each
    student against the teacher. Returns the tokenizer, the teacher and whether its task head is trained."""
    check_writable(config.run_dir, "output directory")
    check_writable(cache_root(config), "cache directory")
    tokenizer_name = config.teacher.tokenizer or config.teacher.model
    teacher_config = load_config(config.teacher.model)
    tokenizer = load_tokenizer(tokenizer_name, teacher_config, config.teacher.model)
    length, key = (config.data.max_length, "data.max_length") if config.task else (config.corpus.max_length, "corpus.max_length")
    if max_tokens(teacher_config) is not None and length > max_tokens(teacher_config):
        raise BequestError(f"{key} {length} is longer than the teacher takes ({max_tokens(teacher_config)} tokens, its "
                           f"max_position_embeddings): set {key} to at most {max_tokens(teacher_config)}")
    if config.task:
        teacher, has_head = load_teacher(config, get_task(config.task))
    else:
        teacher, has_head = load_encoder(config.teacher.model), False
    for number, student in enumerate(config.students):
        try:
            check_student(student, teacher, config.teacher.model, tokenizer_name, tokenizer, config.task)
        except BequestError as error:
            raise BequestError(f"students.{number} ({student.name}): {error}") from None
    return tokenizer, teacher, has_head


def check_inputs(config: RunConfig, accelerator: Accelerator) -> Inputs:
    """Load and check everything that can be wrong, before anything is written: teacher, tokenizer, shapes, data."""
    tokenizer, teacher, has_head = check_models(config)
    if config.task:
        task = get_task(config.task)
        data = load_task_data(task, config.data.dir, tokenizer, config.data.max_length, config.data.max_train_examples,
                              config.seed, max_eval_examples=config.data.max_eval_examples, stride=config.qa.stride,
                              split_by_article=config.data.split_by_article)
        run = Run(config, tokenizer, accelerator, data.train, data.file_hashes, task=task, dev=data.dev)
    else:
        corpus = config.corpus
        segments, hashes = load_segments(corpus, tokenizer, corpus.max_length, cache_root(config))
        train_part, heldout = split_segments(segments, corpus.heldout_segments, corpus.max_segments, config.seed)
        run = Run(config, tokenizer, accelerator, train_part, hashes, heldout=heldout)
    for number, student in enumerate(config.students):
        if student.wid:
            check_wid_schedule(student, len(run.train), f"students.{number} ({student.name})")
    return Inputs(run, teacher, has_head)


def check_wid_schedule(student: StudentConfig, examples: int, where: str) -> None:
    """Refuse a WID student whose training ends before its 16 mask updates reach the target shape."""
    steps = 0
    for stage in student.all_stages():
        size = min(examples, stage.data.max_examples or examples)
        steps += stage.train.max_steps or stage.train.epochs * math.ceil(size / stage.train.batch_size)
    needed = UPDATES * student.wid.w_step
    if steps < needed:
        raise BequestError(f"{where}: WID reaches its target shape after 16 mask updates of wid.w_step={student.wid.w_step} "
                           f"steps ({needed} steps), but the student trains for {steps}: set wid.w_step to at most "
                           f"{steps // UPDATES}, or train longer")


def environment(run: Run) -> dict:
    packages = ("torch", "transformers", "accelerate", "datasets", "safetensors", "numpy", "scipy", "scikit-learn")
    return {
        "bequest": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: version(name) for name in packages},
        "torch_threads": torch.get_num_threads(),
        "precision": resolved_precision(run.config.runtime),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "seed": run.config.seed,
        "command": sys.argv,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data_files": run.file_hashes,
        "train_examples": len(run.train),
        "dev_examples": {split: len(d) for split, d in run.dev.items()} if run.dev else None,
        "heldout_segments": len(run.heldout) if run.heldout else None,
    }


def stages_text(student: StudentConfig) -> str:
    stages = student.all_stages()
    return "; ".join(f"stage {n} ({stage.name or 'unnamed'}): {stage.objectives.describe()}" if len(stages) > 1
                     else stage.objectives.describe() for n, stage in enumerate(stages, 1))


def initial_student(run: Run, student: StudentConfig, teacher: nn.Module) -> tuple[nn.Module, list[int] | None, str, dict | None]:
    """The student before training, the teacher layers it copied, a description of its start, and
    for an extracted student what was kept and the scores that chose it."""
    if student.model:
        torch.manual_seed(run.config.seed)  # a new task head starts the same every time
        if run.task:
            model, _ = load_task_model(student.model, run.task, **label_maps(run.task))
        else:
            model = load_encoder(student.model)
        return model, None, f"pretrained {student.model}", None
    start = student.init if isinstance(student.init, str) else "explicit"
    if student.extract:
        spec = student.extract
        chosen = select_layers(student.init, student.layers, teacher.config.num_hidden_layers)
        model, selection, scores = extract_student(teacher, chosen, spec, run.train, run.task.kind if run.task else None, run.pad,
                                                   run.config.seed, run.tokenizer, run.config.teacher.model)
        extraction = {"scorer": spec.scorer, "kept": selection.to_json(), "scores": scores.to_json()}
        return model, chosen, f"{start} + ETD width extraction ({spec.scorer})", extraction
    model, chosen = init_student(teacher, student.init, student.layers, run.config.seed)
    if student.wid:  # trained wrapped in compactors, merged to the target width at the end
        spec = student.wid
        log = run.dir / "logs" / f"{student.name}.wid_masks.jsonl" if run.accelerator.is_main_process else None
        model = Compacting(model, spec, mask_log=log)
        return model, chosen, f"{start} + WID compactors ({spec.strategy}-wise, to hidden {spec.hidden_size})", None
    return model, chosen, start, None


def extract_recipe_student(config: RunConfig, name: str | None, output: Path, overwrite: bool) -> None:
    """`bequest extract`: the recipe's extracted student, before any distillation, as a model folder."""
    candidates = [s for s in config.students if s.extract and (name is None or s.name == name)]
    if not candidates:
        named = f"no student named '{name}' with" if name else "no student has"
        raise BequestError(f"{named} an extract section in the recipe: add extract: {{hidden_size: ...}} to a student")
    output = Path(output)
    if output.exists() and not overwrite:
        raise BequestError(f"{output} already exists: choose another --output, or pass --overwrite to replace it")
    set_seed(config.seed)
    accelerator = make_accelerator(config.runtime)
    inputs = check_inputs(config, accelerator)
    run = inputs.run
    teacher = inputs.teacher
    if run.task:  # Taylor scores need the task-trained teacher; fine-tuned once and cached
        data = TaskData(run.task, run.train, run.dev, run.file_hashes)
        teacher, _ = prepare_teacher(config, data, run.tokenizer, accelerator, teacher, inputs.teacher_has_head)
    teacher = accelerator.unwrap_model(teacher, keep_fp32_wrapper=False).to(accelerator.device).eval()
    model, _, start, extraction = initial_student(run, candidates[0], teacher)
    with building_dir(output, tensor_bytes(model)) as tmp:
        model.save_pretrained(tmp)
        run.tokenizer.save_pretrained(tmp)
        write_json(tmp / "extraction.json", {"teacher": config.teacher.model, "init": start, **extraction})
    console.print(f"extracted {candidates[0].name} ({count_parameters(model):,} parameters, hidden "
                  f"{model.config.hidden_size}, {model.config.num_hidden_layers} layers) to {output}")


def merge_wid_checkpoint(run_dir: Path, name: str | None, output: Path, overwrite: bool) -> None:
    """`bequest merge`: the latest checkpoint of a WID student (of a killed or still running run),
    merged at the masks it holds into a model folder."""
    run_dir, output = Path(run_dir), Path(output)
    if not is_run_dir(run_dir):
        raise BequestError(f"{run_dir} is not a bequest run directory (no bequest marker in it)")
    config = load_recipe(run_dir / RECIPE_FILE)
    candidates = [s for s in config.students if s.wid and (name is None or s.name == name)]
    if not candidates:
        raise BequestError(f"{'no student named ' + repr(name) + ' with' if name else 'no student has'} a wid section in {run_dir / RECIPE_FILE}")
    student = candidates[0]
    stages = sorted((run_dir / "checkpoints" / student.name).glob("stage-*"), key=lambda p: int(p.name.split("-")[1]))
    checkpoint = latest_checkpoint(stages[-1]) if stages else None
    if checkpoint is None:
        raise BequestError(f"{student.name} has no checkpoint in {run_dir / 'checkpoints'}: none saved yet, or the student "
                           f"finished and its merged model is {run_dir / student.name}")
    if output.exists() and not overwrite:
        raise BequestError(f"{output} already exists: choose another --output, or pass --overwrite to replace it")
    shape = copy.deepcopy(load_config(config.teacher.model))
    shape.num_hidden_layers = student.layers
    if config.task:
        task = get_task(config.task)
        shape.update({"num_labels": task.num_labels, **label_maps(task)})
    model = (task_model_class(task) if config.task else AutoModel).from_config(shape)
    wrapped = Compacting(model, student.wid)
    check_checkpoint(checkpoint)
    saved = load_file(str(checkpoint / "model.safetensors"))
    wrapped.load_state_dict({key.removeprefix("student."): value for key, value in saved.items() if key.startswith("student.")})
    merged = wrapped.merge()
    tokenizer = load_tokenizer(config.teacher.tokenizer or config.teacher.model, shape, config.teacher.model)
    with building_dir(output, tensor_bytes(merged)) as tmp:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "wid.json", {"checkpoint": str(checkpoint), "step": int(wrapped.step), "kept": wrapped.selection().to_json()})
    console.print(f"merged {student.name} at step {int(wrapped.step)} (hidden {merged.config.hidden_size}, "
                  f"{count_parameters(merged):,} parameters) to {output}")


def build_student(run: Run, student: StudentConfig, teacher: nn.Module, teacher_info: dict) -> dict:
    """Initialise, distil stage by stage, export and re-score one student; return its record.

    A student already exported is reused; an unfinished stage resumes from its checkpoint (a
    finished stage's last checkpoint is kept until export, so resuming skips it).
    """
    folder = run.dir / student.name
    done = read_record(folder)
    if done is not None:
        console.print(f"[green]{student.name}[/]: already exported in {folder}, reusing it")
        return done
    config = run.config
    model, chosen, start, extraction = initial_student(run, student, teacher)
    if student.sps:
        model = share_layers(model, student.sps.mode)
        start = f"{start} + SPS ({student.sps.mode}): {model.config.num_hidden_layers // 2} layers of parameters run twice"
    main = run.accelerator.is_main_process  # under DDP the others train alongside it and write nothing
    if extraction is not None and main:
        write_json(run.dir / "logs" / f"{student.name}.extraction.json", extraction)
    stages = student.all_stages()
    history, curve, seconds, examples = [], [], 0.0, 0
    for number, stage in enumerate(stages, 1):
        terms = build_terms(stage.objectives, model.config, teacher.config, run.tokenizer, config.teacher.model, config.task)
        data = run.train
        if stage.data.max_examples is not None:
            data = data.select(subsample(len(data), stage.data.max_examples, config.seed + number))
        soft = teacher_logits(config, teacher, data, run.pad) if stage.objectives.kd or stage.objectives.ptp else None
        if "ptp" in terms and terms["ptp"][1].thresholds is None:
            terms["ptp"][1].thresholds = ptp_thresholds(soft, torch.tensor(data.labels))
            console.print(f"{student.name}: PTP thresholds from the teacher's confidence (t1, t2) = {terms['ptp'][1].thresholds}")
        internals = None
        if teacher_reads(terms) and "mlm" not in terms:  # masked text changes every step: nothing to cache
            internals, note = cache_teacher_outputs(teacher, data, teacher_reads(terms), config.runtime.teacher_cache_mb,
                                                    config.eval.batch_size, run.pad)
            console.print(f"{student.name}: {note}")
        label = student.name if len(stages) == 1 else f"{student.name} stage {number}/{len(stages)}"
        log = train(
            Distiller(model, terms, teacher, soft, internals),
            data,
            lambda m, batch: m(batch),
            stage.train,
            seed=config.seed,
            pad_token_id=run.pad,
            accelerator=run.accelerator,
            checkpoint_dir=run.dir / "checkpoints" / student.name / f"stage-{number}",
            evaluate=run.evaluate_stage,
            desc=f"training {label}",
        )
        history += [{"stage": number, **row} for row in log["evaluations"]]
        curve += [{"stage": number, **row} for row in log["curve"]]
        seconds, examples = seconds + log["seconds"], examples + log["examples"]
    merge_error = None
    if isinstance(model, Compacting):
        wrapped, model = model, model.merge()
        merge_error = merge_error_of(wrapped, model, next(iter(run.dev.values())) if run.dev else run.heldout, run)
        console.print(f"{student.name}: compactors merged into a dense model of hidden size {model.config.hidden_size} "
                      f"(largest output difference from the wrapped model on a batch: {merge_error:.2g})")
    shared_parameters = None
    if student.sps:  # exported as the ordinary 2N-layer model it computes
        shared_parameters, model = count_parameters(model), unroll(model)
    if main:
        write_json(run.dir / "logs" / f"{student.name}.json", history)
        write_json(run.dir / "logs" / f"{student.name}.curve.json", curve)
    record = {
        "name": student.name, "task": config.task, "metrics": list(run.task.metrics) if run.task else [],
        "num_layers": model.config.num_hidden_layers, "hidden_size": model.config.hidden_size, "init": start, "layers_from": chosen,
        "objectives": stages_text(student), "parameters": count_parameters(model), "seed": config.seed,
        "bequest_version": __version__, "teacher": teacher_info,
        "wid_merge_error": merge_error, "sps_trained_parameters": shared_parameters, "train_seconds": round(seconds, 1), "train_examples_per_s": round(examples / seconds, 1) if seconds else None,
        "recipe": dump_config(config),
    }
    record.update(scoring_settings(config) if run.task else
                  {"max_length": config.corpus.max_length, "eval_batch_size": config.eval.batch_size})
    if main:
        export_student(run, model, record, history, folder)
    run.accelerator.wait_for_everyone()
    return {k: v for k, v in record.items() if k != "recipe"}


def export_student(run: Run, model: nn.Module, record: dict, history: list[dict], folder: Path) -> None:
    """Write the student's model folder (scored as written, not in memory) and drop its checkpoints."""
    with building_dir(folder, tensor_bytes(model)) as tmp:
        model.save_pretrained(tmp)
        run.tokenizer.save_pretrained(tmp)
        if run.task:
            record["dev"] = run.score(run.auto_class.from_pretrained(tmp, use_safetensors=True, trust_remote_code=False).to(run.accelerator.device))
        else:
            record["heldout_loss"] = history[-1]["heldout_loss"]
        write_model_card(tmp, record)
        write_record(tmp, record)
    shutil.rmtree(run.dir / "checkpoints" / record["name"], ignore_errors=True)
    if (run.dir / "checkpoints").is_dir() and not any((run.dir / "checkpoints").iterdir()):
        (run.dir / "checkpoints").rmdir()


@torch.no_grad()
def merge_error_of(wrapped: Compacting, merged: nn.Module, data: Encoded | Segments, run: Run) -> float:
    """Max |difference| between the merged model's outputs (logits, else last hidden states at the
    kept dimensions) and the wrapped model's with its masks applied, on the longest batch of `data`."""
    inputs = model_inputs(data.batch(inference_batches(data.lengths, run.config.eval.batch_size)[0], run.pad))
    inputs = {k: v.to(run.accelerator.device) for k, v in inputs.items()}
    before, after = wrapped.eval()(**inputs), merged.eval()(**inputs)
    if output_logits(before) is not None:
        return (output_logits(before).float() - output_logits(after).float()).abs().max().item()
    return (before.last_hidden_state[..., wrapped.kept_hidden].float() - after.last_hidden_state.float()).abs().max().item()


def print_table(results: dict) -> None:
    if results["task"]:
        main = get_task(results["task"]).main_metric
        score_name, score = f"dev {main}", lambda row: f"{row['dev'][main]:.4f}"
        title = f"{results['task']}: teacher vs students (dev {main}"
    else:
        score_name, score = "held-out loss", lambda row: f"{row['heldout_loss']:.4f}" if "heldout_loss" in row else "-"
        title = "task-agnostic distillation (held-out distillation loss"
    table = Table(title=f"{title}; latency per batch of {results['latency']['batch_size']} on {results['latency']['device']})")
    for column in ("model", "layers", score_name, "parameters", "latency ms", "speed-up"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, row in [("teacher", results["teacher"])] + list(results["students"].items()):
        table.add_row(name, str(row["num_layers"]), score(row), f"{row['parameters'] / 1e6:.1f}M",
                      f"{row['latency_ms']:.1f}", f"{row['speedup']:.2f}x")
    Console().print(table)


def run_recipe(config: RunConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Run a whole recipe; return (and write to results.json) the scores, sizes and speeds."""
    started = time.perf_counter()
    set_seed(config.seed)
    accelerator = make_accelerator(config.runtime, config.run_dir / "trackers")
    inputs = check_inputs(config, accelerator)
    prepare_run_dir(config, resume, overwrite, inputs.run.file_hashes, accelerator)
    run = inputs.run
    main = accelerator.is_main_process  # under DDP (accelerate launch) the only process that writes
    if main and not resume:
        write_text(run.dir / RECIPE_FILE, dump_config(config))
    accelerator.init_trackers(config.name)  # no-op without runtime.trackers
    if main:  # a resumed session records its own environment beside the first one's, which it never replaces
        resumed = len(list(run.dir.glob("environment*.json")))
        write_json(run.dir / (f"environment.resumed-{resumed}.json" if resume else "environment.json"), environment(run))

    if run.task:
        data = TaskData(run.task, run.train, run.dev, run.file_hashes)
        teacher, teacher_info = prepare_teacher(config, data, run.tokenizer, accelerator, inputs.teacher, inputs.teacher_has_head)
    else:
        teacher, teacher_info = inputs.teacher, {"model": config.teacher.model, "finetuned_by_bequest": False}
    teacher = accelerator.unwrap_model(teacher, keep_fp32_wrapper=False).to(accelerator.device).eval()
    history = teacher_info.pop("history", None)
    if history is not None and main:
        write_json(run.dir / "logs" / "teacher.json", history)
    teacher_info.update(parameters=count_parameters(teacher), num_layers=teacher.config.num_hidden_layers,
                        hidden_size=teacher.config.hidden_size, task=config.task,
                        metrics=list(run.task.metrics) if run.task else [])
    if run.task:
        teacher_info["dev"] = run.score(teacher)

    students = {s.name: build_student(run, s, teacher, teacher_info) for s in config.students}
    if not main:  # the main process measures, writes and prints the results
        finish_trackers(accelerator)
        return {}
    loaded = {name: run.auto_class.from_pretrained(run.dir / name, use_safetensors=True, trust_remote_code=False).to(accelerator.device)
              for name in students}
    settings = config.eval
    timing_data = next(iter(run.dev.values())) if run.dev else run.heldout
    latency = latencies_ms({"teacher": teacher, **loaded}, timing_data, settings.latency_batch_size, run.pad,
                           settings.latency_repeats)
    for name, row in [("teacher", teacher_info)] + list(students.items()):
        row.update(latency_ms=latency[name], speedup=latency["teacher"] / latency[name],
                   path=str(run.dir / name) if name in students else teacher_info.get("path", teacher_info["model"]))
    results = {
        "task": config.task,
        "corpus": config.corpus.model_dump(mode="json") if config.corpus else None,
        "main_metric": run.task.main_metric if run.task else "heldout_loss",
        "teacher": teacher_info,
        "students": {name: {k: v for k, v in row.items() if k != "teacher"} for name, row in students.items()},
        "latency": {"batch_size": settings.latency_batch_size, "device": str(accelerator.device),
                    "threads": torch.get_num_threads(), "repeats": settings.latency_repeats},
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    write_json(run.dir / "results.json", results)
    finish_trackers(accelerator)
    print_table(results)
    console.print(f"results: {run.dir / 'results.json'}")
    return results
