"""One student of a run: initialise, distil stage by stage, finalise, export and re-score.

A student already exported is reused; an unfinished stage resumes from its checkpoint (a finished
stage's last checkpoint is kept until export, so resuming skips it). Which initialisers and which
objectives the student has is read from registries: nothing here names a method.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from accelerate import Accelerator
from rich.console import Console
from torch import nn

from bequest import __version__
from bequest.config import RunConfig, StudentConfig, dump_config
from bequest.data.features import subsample
from bequest.export import read_record, write_model_card, write_record
from bequest.init.base import StudentContext
from bequest.init.student import build_student, finalise_student, training_callbacks
from bequest.io import building_dir, tensor_bytes, write_json
from bequest.models.loading import count_parameters
from bequest.objectives.terms import any_term, build_terms
from bequest.train.distiller import Distiller
from bequest.train.loop import train
from bequest.train.teacher import teacher_logits
from bequest.train.teacher_outputs import cache_teacher_outputs, teacher_reads
from bequest.workload import CorpusWorkload, TaskWorkload

console = Console(stderr=True)


@dataclass
class Run:
    """What every step of a run shares."""

    config: RunConfig
    tokenizer: object
    accelerator: Accelerator
    workload: TaskWorkload | CorpusWorkload

    @property
    def dir(self) -> Path:
        return self.config.run_dir

    @property
    def pad(self) -> int:
        return self.tokenizer.pad_token_id

    def student_context(self, student: StudentConfig, teacher: nn.Module) -> StudentContext:
        config, main = self.config, self.accelerator.is_main_process  # under DDP only the main process writes
        return StudentContext(student, teacher, config.teacher.model, self.tokenizer,
                              config.teacher.tokenizer or config.teacher.model, self.workload.task, config.seed, self.pad,
                              train=self.workload.train, sample=self.workload.sample, eval_batch_size=config.eval.batch_size,
                              log_dir=self.dir / "logs" if main else None,
                              say=lambda line: console.print(f"{student.name}: {line}"))


def stages_text(student: StudentConfig) -> str:
    stages = student.all_stages()
    return "; ".join(f"stage {n} ({stage.name or 'unnamed'}): {stage.objectives.describe()}" if len(stages) > 1
                     else stage.objectives.describe() for n, stage in enumerate(stages, 1))


def distil_student(run: Run, student: StudentConfig, teacher: nn.Module, teacher_info: dict) -> dict:
    """Initialise, distil, finalise and export one student; return its record."""
    folder = run.dir / student.name
    done = read_record(folder)
    if done is not None:
        console.print(f"[green]{student.name}[/]: already exported in {folder}, reusing it")
        return done
    config, main = run.config, run.accelerator.is_main_process
    ctx = run.student_context(student, teacher)
    start = build_student(ctx)
    model = start.model
    if main:
        for name, content in start.logs.items():
            write_json(run.dir / "logs" / f"{student.name}.{name}.json", content)
    callbacks = training_callbacks(student, model)
    stages = student.all_stages()
    history, curve, seconds, examples = [], [], 0.0, 0
    for number, stage in enumerate(stages, 1):
        terms = build_terms(stage.objectives, model.config, teacher.config, run.tokenizer, config.teacher.model, run.workload.task)
        data = run.workload.student_train
        if stage.data.max_examples is not None:
            data = data.select(subsample(len(data), stage.data.max_examples, config.seed + number))
        soft = teacher_logits(config, teacher, data, run.pad) if any_term(terms, "reads_teacher_logits") else None
        for _, term in terms.values():
            note = term.prepare(soft, data)
            if note:
                ctx.say(note)
        internals = None
        if teacher_reads(terms) and not any_term(terms, "transforms_inputs"):  # changed inputs: nothing to cache
            internals, note = cache_teacher_outputs(teacher, data, teacher_reads(terms), config.runtime.teacher_cache_mb,
                                                    config.eval.batch_size, run.pad)
            ctx.say(note)
        label = student.name if len(stages) == 1 else f"{student.name} stage {number}/{len(stages)}"
        log = train(Distiller(model, terms, teacher, soft, internals), data, lambda m, batch: m(batch), stage.train,
                    seed=config.seed, pad_token_id=run.pad, accelerator=run.accelerator,
                    checkpoint_dir=run.dir / "checkpoints" / student.name / f"stage-{number}",
                    evaluate=run.workload.evaluate_stage, desc=f"training {label}", callbacks=callbacks)
        history += [{"stage": number, **row} for row in log["evaluations"]]
        curve += [{"stage": number, **row} for row in log["curve"]]
        seconds, examples = seconds + log["seconds"], examples + log["examples"]
    model, finalised = finalise_student(ctx, model)
    if main:
        write_json(run.dir / "logs" / f"{student.name}.json", history)
        write_json(run.dir / "logs" / f"{student.name}.curve.json", curve)
    record = {
        "name": student.name, **run.workload.record(),
        "num_layers": model.config.num_hidden_layers, "hidden_size": model.config.hidden_size, "init": start.description,
        "layers_from": start.layers_from, "objectives": stages_text(student), "parameters": count_parameters(model),
        "seed": config.seed, "bequest_version": __version__, "teacher": teacher_info, **finalised,
        "train_seconds": round(seconds, 1), "train_examples_per_s": round(examples / seconds, 1) if seconds else None,
        "recipe": dump_config(config),
    }
    if main:
        export_student(run, model, record, history, folder)
    run.accelerator.wait_for_everyone()
    return {k: v for k, v in record.items() if k != "recipe"}


def export_student(run: Run, model: nn.Module, record: dict, history: list[dict], folder: Path) -> None:
    """Write the student's model folder (scored as written, not in memory) and drop its checkpoints."""
    with building_dir(folder, tensor_bytes(model)) as tmp:
        run.tokenizer.save_pretrained(tmp)  # first: a sentence-transformers folder is written beside its tokenizer
        model.save_pretrained(tmp)
        record.update(run.workload.exported_scores(tmp, run.accelerator.device, history))
        write_model_card(tmp, record)
        write_record(tmp, record)
    shutil.rmtree(run.dir / "checkpoints" / record["name"], ignore_errors=True)
    if (run.dir / "checkpoints").is_dir() and not any((run.dir / "checkpoints").iterdir()):
        (run.dir / "checkpoints").rmdir()
