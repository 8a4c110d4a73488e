"""One run of a recipe: teacher -> students (initialise, distil, export) -> evaluate -> results.

Everything that can be wrong with the input is checked before any work starts. Every
finished piece is written atomically, so `resume=True` continues a killed run: the teacher
comes from its cache, finished students from their exported folders, and an unfinished
student from its last checkpoint.
"""

from __future__ import annotations

import copy
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
from torch import nn
from transformers import AutoModelForSequenceClassification, set_seed

from bequest import __version__
from bequest.config import RunConfig, StudentConfig, dump_config
from bequest.data.task_data import TaskData, load_task_data
from bequest.data.tasks import get_task
from bequest.errors import BequestError
from bequest.eval.evaluate import evaluate
from bequest.eval.predict import latencies_ms
from bequest.export import read_record, write_model_card, write_record
from bequest.init.layers import init_student, select_layers
from bequest.io import building_dir, write_json, write_text
from bequest.models.loading import count_parameters, load_config, load_tokenizer
from bequest.models.capture import projections
from bequest.objectives.terms import build_terms
from bequest.train.distiller import Distiller
from bequest.train.loop import train
from bequest.train.teacher import load_teacher, prepare_teacher, teacher_logits

RECIPE_FILE = "recipe.yaml"
console = Console(stderr=True)


@dataclass
class Run:
    """What every step of a run shares."""

    config: RunConfig
    data: TaskData
    tokenizer: object
    accelerator: Accelerator

    @property
    def dir(self) -> Path:
        return self.config.run_dir

    @property
    def pad(self) -> int:
        return self.tokenizer.pad_token_id

    def score(self, model: nn.Module) -> dict[str, float]:
        return evaluate(model, self.data.task, self.data.dev, self.config.eval.batch_size, self.pad)


def prepare_run_dir(config: RunConfig, resume: bool, overwrite: bool) -> None:
    """Refuse to touch an existing directory unless asked, and never delete one bequest did not make."""
    run_dir = config.run_dir
    ours = (run_dir / RECIPE_FILE).is_file()
    if resume and overwrite:
        raise BequestError("--resume and --overwrite contradict each other: choose one")
    if resume:
        if not ours:
            raise BequestError(f"nothing to resume in {run_dir}: run without --resume to start it")
        if (run_dir / RECIPE_FILE).read_text() != dump_config(config):
            raise BequestError(
                f"the recipe differs from the one {run_dir} was started with ({run_dir / RECIPE_FILE}): "
                "resume with the same recipe and overrides, or start a new run with --output-dir"
            )
        for leftover in run_dir.glob(".*.tmp"):  # half-written exports of the killed process
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise BequestError(
                f"run directory {run_dir} already exists: pass --resume to continue it, "
                "--overwrite to replace it, or --output-dir to write elsewhere"
            )
        if not ours:
            raise BequestError(f"{run_dir} is not a bequest run directory (no {RECIPE_FILE}): refusing to delete it, choose another --output-dir")
        shutil.rmtree(run_dir)


@dataclass
class Inputs:
    tokenizer: object
    data: TaskData
    teacher: nn.Module
    teacher_has_head: bool


def check_inputs(config: RunConfig) -> Inputs:
    """Load and check everything that can be wrong, before anything is written: teacher, tokenizer, shapes, data."""
    teacher_config = load_config(config.teacher.model)
    tokenizer = load_tokenizer(config.teacher.tokenizer or config.teacher.model, teacher_config, config.teacher.model)
    depth = teacher_config.num_hidden_layers
    task = get_task(config.task)
    teacher, has_head = load_teacher(config, task)
    for number, student in enumerate(config.students):
        try:
            select_layers("lower" if student.init == "random" else student.init, student.layers or depth, depth)
            for stage in student.all_stages():
                terms = build_terms(stage.objectives, student_config(teacher, student), teacher_config)
                if any(term.attention for _, term in terms.values()):
                    projections(teacher)  # refuses architectures whose attention we cannot read
        except BequestError as error:
            raise BequestError(f"students.{number} ({student.name}): {error}") from None
    data = load_task_data(task, config.data.dir, tokenizer, config.data.max_length,
                          config.data.max_train_examples, config.seed)
    return Inputs(tokenizer, data, teacher, has_head)


def environment(config: RunConfig, data: TaskData) -> dict:
    packages = ("torch", "transformers", "accelerate", "datasets", "safetensors", "numpy", "scipy", "scikit-learn")
    return {
        "bequest": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: version(name) for name in packages},
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "seed": config.seed,
        "command": sys.argv,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data_files": data.file_hashes,
        "train_examples": len(data.train),
        "dev_examples": {split: len(d) for split, d in data.dev.items()},
    }


def student_config(teacher: nn.Module, student: StudentConfig):
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = student.layers or config.num_hidden_layers
    return config


def stages_text(student: StudentConfig) -> str:
    stages = student.all_stages()
    return "; ".join(f"stage {n} ({stage.name or 'unnamed'}): {stage.objectives.describe()}" if len(stages) > 1
                     else stage.objectives.describe() for n, stage in enumerate(stages, 1))


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
    model, chosen = init_student(teacher, student.init, student.layers, config.seed)
    stages = student.all_stages()
    history, curve = [], []
    for number, stage in enumerate(stages, 1):
        terms = build_terms(stage.objectives, model.config, teacher.config)
        soft = teacher_logits(config, teacher, run.data.train, run.pad) if stage.objectives.kd else None
        distiller = Distiller(model, terms, teacher, soft)
        label = student.name if len(stages) == 1 else f"{student.name} stage {number}/{len(stages)}"
        log = train(
            distiller,
            run.data.train,
            lambda m, batch: m(batch),
            stage.train,
            seed=config.seed,
            pad_token_id=run.pad,
            accelerator=run.accelerator,
            checkpoint_dir=run.dir / "checkpoints" / student.name / f"stage-{number}",
            evaluate=lambda m: run.score(run.accelerator.unwrap_model(m).student),
            desc=f"training {label}",
        )
        history += [{"stage": number, **row} for row in log["evaluations"]]
        curve += [{"stage": number, **row} for row in log["curve"]]
    write_json(run.dir / "logs" / f"{student.name}.json", history)
    write_json(run.dir / "logs" / f"{student.name}.curve.json", curve)
    record = {
        "name": student.name, "task": config.task, "metrics": list(run.data.task.metrics),
        "num_layers": model.config.num_hidden_layers, "init": student.init if isinstance(student.init, str) else "explicit",
        "layers_from": chosen, "objectives": stages_text(student),
        "parameters": count_parameters(model), "seed": config.seed, "max_length": config.data.max_length,
        "eval_batch_size": config.eval.batch_size, "bequest_version": __version__, "teacher": teacher_info,
        "recipe": dump_config(config),
    }
    with building_dir(folder) as tmp:
        model.save_pretrained(tmp)
        run.tokenizer.save_pretrained(tmp)
        exported = AutoModelForSequenceClassification.from_pretrained(tmp, use_safetensors=True).to(run.accelerator.device)
        record["dev"] = run.score(exported)  # the score of the folder as written, not of the in-memory model
        write_model_card(tmp, record)
        write_record(tmp, record)
    shutil.rmtree(run.dir / "checkpoints" / student.name, ignore_errors=True)
    if (run.dir / "checkpoints").is_dir() and not any((run.dir / "checkpoints").iterdir()):
        (run.dir / "checkpoints").rmdir()
    return {k: v for k, v in record.items() if k != "recipe"}


def print_table(results: dict) -> None:
    main = get_task(results["task"]).main_metric
    table = Table(title=f"{results['task']}: teacher vs students (dev {main}; latency per batch of "
                        f"{results['latency']['batch_size']} on {results['latency']['device']})")
    for column in ("model", "layers", f"dev {main}", "parameters", "latency ms", "speed-up"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, row in [("teacher", results["teacher"])] + list(results["students"].items()):
        table.add_row(name, str(row["num_layers"]), f"{row['dev'][main]:.4f}", f"{row['parameters'] / 1e6:.1f}M",
                      f"{row['latency_ms']:.1f}", f"{row['speedup']:.2f}x")
    Console().print(table)


def run_recipe(config: RunConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Run a whole recipe; return (and write to results.json) the scores, sizes and speeds."""
    started = time.perf_counter()
    set_seed(config.seed)
    inputs = check_inputs(config)
    prepare_run_dir(config, resume, overwrite)
    tokenizer, data = inputs.tokenizer, inputs.data
    accelerator = Accelerator()
    run = Run(config=config, data=data, tokenizer=tokenizer, accelerator=accelerator)
    if not resume:
        write_text(run.dir / RECIPE_FILE, dump_config(config))
    write_json(run.dir / "environment.json", environment(config, data))

    teacher, teacher_info = prepare_teacher(config, data, tokenizer, accelerator, inputs.teacher, inputs.teacher_has_head)
    teacher = accelerator.unwrap_model(teacher).to(accelerator.device).eval()
    if "history" in teacher_info:
        write_json(run.dir / "logs" / "teacher.json", teacher_info.pop("history"))
    teacher_info.update(dev=run.score(teacher), parameters=count_parameters(teacher),
                        num_layers=teacher.config.num_hidden_layers, task=config.task, metrics=list(data.task.metrics))

    students = {s.name: build_student(run, s, teacher, teacher_info) for s in config.students}
    loaded = {name: AutoModelForSequenceClassification.from_pretrained(run.dir / name, use_safetensors=True).to(accelerator.device)
              for name in students}
    settings = config.eval
    latency = latencies_ms({"teacher": teacher, **loaded}, next(iter(data.dev.values())), settings.latency_batch_size,
                           run.pad, settings.latency_repeats)
    for name, row in [("teacher", teacher_info)] + list(students.items()):
        row.update(latency_ms=latency[name], speedup=latency["teacher"] / latency[name], path=str(run.dir / name) if name in students else teacher_info.get("path", teacher_info["model"]))
    results = {
        "task": config.task,
        "main_metric": data.task.main_metric,
        "teacher": teacher_info,
        "students": {name: {k: v for k, v in row.items() if k != "teacher"} for name, row in students.items()},
        "latency": {"batch_size": config.eval.latency_batch_size, "device": str(accelerator.device),
                    "threads": torch.get_num_threads(), "repeats": config.eval.latency_repeats},
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    write_json(run.dir / "results.json", results)
    print_table(results)
    console.print(f"results: {run.dir / 'results.json'}")
    return results
