"""One run of a recipe, top-down: check everything -> prepare the run directory -> the teacher ->
each student (initialise, distil, finalise, export) -> time every model -> results.json and the table.

Everything that can be wrong with the input is checked before any work starts. Every finished
piece is written atomically, so `resume=True` continues a killed run: the teacher comes from its
cache, finished students from their exported folders, and an unfinished student from its last
checkpoint. The run names no method and no task: its workload (`bequest.workload`) says what a
task or a corpus supplies, and each student's initialisers and objectives come from registries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from accelerate import Accelerator
from rich.console import Console
from torch import nn
from transformers import set_seed

from bequest.config import RunConfig, dump_config
from bequest.deploy.latency import fixed_threads, latencies
from bequest.deploy.measure import deployment_table
from bequest.distil import Run, distil_student
from bequest.environment import environment
from bequest.errors import BequestError, warn
from bequest.export import add_measurements
from bequest.init.base import StudentContext
from bequest.init.student import check_schedule, check_student, student_shape
from bequest.io import check_writable, write_json, write_text
from bequest.models.capture import projections
from bequest.models.loading import (
    count_parameters,
    load_config,
    load_tokenizer,
    max_tokens,
)
from bequest.objectives.terms import build_terms, check_objective_data
from bequest.results_table import print_table
from bequest.run_dir import RECIPE_FILE, prepare_run_dir
from bequest.train.runtime import finish_trackers, make_accelerator
from bequest.train.teacher import cache_root
from bequest.workload import workload

console = Console(stderr=True)


def check_models(config: RunConfig, work=None) -> tuple[object, nn.Module, bool]:
    """Check every model-side input before any work: writable folders, teacher, tokenizer, lengths and each
    student (its initialisers and objectives) against the teacher. Returns the tokenizer, the teacher and
    whether its task head is trained."""
    check_writable(config.run_dir, "output directory")
    check_writable(cache_root(config), "cache directory")
    work = work or workload(config)
    tokenizer_name = config.teacher.tokenizer or config.teacher.model
    teacher_config = load_config(config.teacher.model)
    tokenizer = load_tokenizer(tokenizer_name, teacher_config, config.teacher.model)
    longest = max_tokens(teacher_config)
    if longest is not None and work.max_length > longest:
        raise BequestError(f"{work.length_key} {work.max_length} is longer than the teacher takes ({longest} tokens, its "
                           f"max_position_embeddings): set {work.length_key} to at most {longest}")
    teacher, has_head = work.load_teacher()
    for number, student in enumerate(config.students):
        ctx = StudentContext(student, teacher, config.teacher.model, tokenizer, tokenizer_name, work.task, config.seed,
                             tokenizer.pad_token_id)
        try:
            check_student(ctx)
            for stage in student.all_stages():
                terms = build_terms(stage.objectives, student_shape(ctx), teacher.config, tokenizer, config.teacher.model, work.task)
                if any(term.attention for _, term in terms.values()):
                    projections(teacher)  # refuses architectures whose attention we cannot read
        except BequestError as error:
            raise BequestError(f"students.{number} ({student.name}): {error}") from None
    return tokenizer, teacher, has_head


@dataclass
class Inputs:
    run: Run
    teacher: nn.Module
    teacher_has_head: bool


def check_inputs(config: RunConfig, accelerator: Accelerator) -> Inputs:
    """Load and check everything that can be wrong, before anything is written: teacher, tokenizer, shapes, data."""
    work = workload(config)
    tokenizer, teacher, has_head = check_models(config, work)
    work.load_data(tokenizer)
    work.add_transfer(tokenizer, teacher)
    for number, student in enumerate(config.students):
        try:
            check_schedule(student, len(work.student_train))
            for stage in student.all_stages():
                check_objective_data(stage.objectives, work.student_train)
        except BequestError as error:
            raise BequestError(f"students.{number} ({student.name}): {error}") from None
    return Inputs(Run(config, tokenizer, accelerator, work), teacher, has_head)


def ready_teacher(run: Run, inputs: Inputs) -> tuple[nn.Module, dict]:
    """The teacher the students learn from, on the run's device, with its record (and scores)."""
    accelerator, work = run.accelerator, run.workload
    teacher, info = work.ready_teacher(run.tokenizer, accelerator, inputs.teacher, inputs.teacher_has_head)
    teacher = accelerator.unwrap_model(teacher, keep_fp32_wrapper=False).to(accelerator.device).eval()
    history = info.pop("history", None)
    if history is not None and accelerator.is_main_process:
        write_json(run.dir / "logs" / "teacher.json", history)
    info.update(parameters=count_parameters(teacher), num_layers=teacher.config.num_hidden_layers,
                hidden_size=teacher.config.hidden_size, task=work.task.name if work.task else None,
                metrics=list(work.task.metrics) if work.task else [], **work.teacher_scores(teacher))
    return teacher, info


WEAK_MARGIN = 0.02  # a teacher this close to its baseline (2 points) has not learned the task


def weak_teacher(teacher: dict, baselines: dict, metric: str) -> list[str]:
    """A line for each baseline the teacher is not WEAK_MARGIN above on the dev set: its students cannot do better."""
    lines = []
    for name, scores in baselines.items():
        if teacher["dev"][metric] - scores["dev"][metric] < WEAK_MARGIN:
            lines.append(f"the teacher's dev {metric} {teacher['dev'][metric]:.4f} is not {100 * WEAK_MARGIN:.0f} points above "
                         f"always answering the {name} ({scores['dev'][metric]:.4f}): it has not learned the task, so "
                         "its students will not; fine-tune it for more steps (teacher.finetune.min_steps or epochs) or at "
                         "another teacher.finetune.learning_rate")
    return lines


def run_recipe(config: RunConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """Run a whole recipe; return (and write to results.json) the scores, sizes and speeds."""
    started = time.perf_counter()
    set_seed(config.seed)
    accelerator = make_accelerator(config.runtime, config.run_dir / "trackers")
    inputs = check_inputs(config, accelerator)
    run = inputs.run
    prepare_run_dir(config.run_dir, dump_config(config), [s.name for s in config.students], run.workload.file_hashes,
                    resume, overwrite, accelerator)
    main = accelerator.is_main_process  # under DDP (accelerate launch) the only process that writes
    for line in run.workload.notes() if main else []:  # once the run directory is accepted: no refusal can follow
        console.print(line)
    if main and not resume:
        write_text(run.dir / RECIPE_FILE, dump_config(config))
    accelerator.init_trackers(config.name)  # no-op without runtime.trackers
    if main:  # a resumed session records its own environment beside the first one's, which it never replaces
        resumed = len(list(run.dir.glob("environment*.json")))
        write_json(run.dir / (f"environment.resumed-{resumed}.json" if resume else "environment.json"), environment(run))

    teacher, teacher_info = ready_teacher(run, inputs)
    baselines = run.workload.baselines()
    warnings = weak_teacher(teacher_info, baselines, run.workload.describe()["main_metric"])
    for line in warnings if main else []:
        warn(line)
    students = {s.name: distil_student(run, s, teacher, teacher_info) for s in config.students}
    if not main:  # the main process measures, writes and prints the results
        finish_trackers(accelerator)
        return {}

    auto_class, settings = run.workload.auto_class, config.eval
    loaded = {name: auto_class.from_pretrained(run.dir / name, use_safetensors=True, trust_remote_code=False).to(accelerator.device)
              for name in students}
    with fixed_threads(settings.latency_threads) as threads:
        timed = latencies({"teacher": teacher, **loaded}, run.workload.sample, [settings.latency_batch_size], run.pad,
                          settings.latency_repeats)
    latency = {name: by_size[str(settings.latency_batch_size)]["p50"] for name, by_size in timed.items()}
    for name, row in [("teacher", teacher_info)] + list(students.items()):
        row.update(latency_ms=latency[name], speedup=latency["teacher"] / latency[name],
                   path=str(run.dir / name) if name in students else teacher_info.get("path", teacher_info["model"]))
    deploy = None
    if len(config.export.formats) > 1:
        models = {"teacher": (teacher, run.dir / "teacher"), **{name: (loaded[name], run.dir / name) for name in students}}
        known = {name: {split: row[split] for split in ("dev", "test") if split in row}
                 for name, row in [("teacher", teacher_info)] + list(students.items())}
        deploy = deployment_table(models, config.export.formats, run.workload.sample, run.workload.final_scores, known,
                                  run.pad, settings.latency_batch_size, settings.latency_repeats, settings.latency_threads)
    main_metric = run.workload.describe()["main_metric"]
    for name, row in students.items():
        timing = {"batch_size": settings.latency_batch_size, "ms": row["latency_ms"], "teacher_ms": latency["teacher"],
                  "speedup": row["speedup"], "device": str(accelerator.device), "threads": threads,
                  "repeats": settings.latency_repeats}
        add_measurements(run.dir / name, main_metric, latency=timing, **({"deploy": deploy} if deploy else {}))
    results = {
        **run.workload.describe(),
        "teacher": teacher_info,
        "baselines": baselines,
        "warnings": warnings,
        "students": {name: {k: v for k, v in row.items() if k != "teacher"} for name, row in students.items()},
        "latency": {"batch_size": settings.latency_batch_size, "device": str(accelerator.device),
                    "threads": threads, "repeats": settings.latency_repeats},
        **({"deploy": deploy} if deploy else {}),
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    write_json(run.dir / "results.json", results)
    finish_trackers(accelerator)
    print_table(results)
    console.print(f"results: {run.dir / 'results.json'}")
    return results
