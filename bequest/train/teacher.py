"""The teacher: fine-tuned on the task when it is not already, cached by what determines it.

A fine-tuned teacher is stored under `<cache>/teachers/<task>-<key>`, where the key hashes the
starting weights, the training data, the fine-tuning settings and the seed: a second run with
the same inputs reuses it, and any change makes a new one. Its logits on a dataset are cached
likewise, so the teacher runs once per dataset however many epochs and runs use them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn

from bequest import __version__
from bequest.config import RunConfig
from bequest.data.features import Encoded
from bequest.data.tasks import get_task
from bequest.errors import warn
from bequest.eval.predict import predict
from bequest.export import write_record
from bequest.io import (
    Damaged,
    building_dir,
    cached_arrays,
    check_manifest,
    entry_lock,
    stale_temporaries,
    tensor_bytes,
)
from bequest.kinds import TaskData, evaluate
from bequest.models.loading import load_task_model, weights_fingerprint
from bequest.run_dir import latest_checkpoint
from bequest.train.loop import train
from bequest.train.runtime import resolved_precision


def cache_root(config: RunConfig) -> Path:
    return Path(config.cache_dir or os.environ.get("BEQUEST_CACHE") or Path.home() / ".cache" / "bequest").expanduser()


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def load_teacher(config: RunConfig, task) -> tuple[nn.Module, bool]:
    """The teacher as a classifier for `task`, and whether its task head came from the checkpoint."""
    torch.manual_seed(config.seed)  # a freshly created task head starts the same every time
    return load_task_model(config.teacher.model, task, **task.label_maps(), **task.kind.teacher_options(config))


def tokenizer_fingerprint(tokenizer) -> str:
    return _key(sorted(tokenizer.get_vocab().items()), type(tokenizer).__name__)


@contextmanager
def cache_entry_lock(folder: Path, accelerator: Accelerator):
    """Hold `folder`'s cache entry for this run: another run (another process) wanting the same entry
    waits until this one has written it, then finds it. Under DDP the main process holds the lock
    for all of the run's processes."""
    lock = entry_lock(folder) if accelerator.is_main_process else nullcontext()
    with lock:
        accelerator.wait_for_everyone()
        try:
            yield
        finally:
            accelerator.wait_for_everyone()


def _cached_teacher(folder: Path, task) -> nn.Module | None:
    """The fine-tuned teacher cached in `folder`, verified; a damaged one is reported, removed and None returned."""
    if not folder.exists():
        return None
    try:
        check_manifest(folder)
    except Damaged as damage:
        warn(f"the cached teacher is damaged ({damage}): fine-tuning it again")
        shutil.rmtree(folder, ignore_errors=True)
        return None
    model, _ = load_task_model(str(folder), task)
    return model


def _drop_damaged_checkpoint(directory: Path) -> None:
    latest = latest_checkpoint(directory)
    if latest is None:
        return
    try:
        check_manifest(latest)
    except Damaged as damage:
        warn(f"the cached teacher's checkpoint is damaged ({damage}): fine-tuning it from the start")
        shutil.rmtree(directory, ignore_errors=True)


def prepare_teacher(config: RunConfig, data: TaskData, tokenizer, accelerator: Accelerator,
                    model: nn.Module, has_head: bool) -> tuple[nn.Module, dict]:
    """Return the task-ready teacher (fine-tuned if it needs to be) and a record of where it came from."""
    task, settings = data.task, config.teacher.finetune
    if settings.when == "never" or (settings.when == "auto" and has_head):
        return model, {"model": config.teacher.model, "finetuned_by_bequest": False}

    # everything that changes the fine-tuned teacher: its start, what it reads, what it learns, how
    key = _key(__version__, weights_fingerprint(model), tokenizer_fingerprint(tokenizer), task.name, data.train.fingerprint(),
               settings.model_dump(), config.seed, resolved_precision(config.runtime))
    folder = cache_root(config) / "teachers" / f"{task.name}-{key}"
    record = {"model": config.teacher.model, "finetuned_by_bequest": True, "path": str(folder)}
    with cache_entry_lock(folder, accelerator):
        cached = _cached_teacher(folder, task)
        if cached is not None:
            return cached, {**record, "cache_hit": True}
        partial = folder.with_name(folder.name + ".partial")
        if accelerator.is_main_process:  # what a killed run left: half-written entries go, checkpoints are resumed
            for stale in stale_temporaries(folder):
                shutil.rmtree(stale, ignore_errors=True)
            _drop_damaged_checkpoint(partial / "checkpoints")
        accelerator.wait_for_everyone()
        pad = tokenizer.pad_token_id
        log = train(
            model,
            data.train,
            task.kind.batch_loss,
            settings,
            seed=config.seed,
            pad_token_id=pad,
            accelerator=accelerator,
            checkpoint_dir=partial / "checkpoints",
            evaluate=lambda m: evaluate(m, task, data.dev, config.eval.batch_size, pad, config.qa),
            desc=f"fine-tuning teacher on {task.name}",
        )
        history = log["evaluations"]
        model = accelerator.unwrap_model(model)
        if accelerator.is_main_process:  # under DDP every process holds the same weights
            with building_dir(folder, tensor_bytes(model)) as tmp:
                model.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
                # what `bequest evaluate` needs to score the teacher as the run did
                write_record(tmp, {**record, "task": task.name, "seed": config.seed, "finetune": settings.model_dump(),
                                   "history": history, **scoring_settings(config)})
            shutil.rmtree(partial, ignore_errors=True)
    return model, {**record, "cache_hit": False, "history": history, "train_seconds": round(log["seconds"], 1)}


def scoring_settings(config: RunConfig) -> dict:
    """How a task model was scored (max length, batch, dev subsample; SQuAD: answer reading and split), so
    `bequest evaluate` can score it again exactly."""
    task = get_task(config.task)
    settings = {"max_length": config.data.max_length, "eval_batch_size": config.eval.batch_size,
                "max_eval_examples": config.data.max_eval_examples, **task.kind.scoring_settings(config)}
    if task.from_data:  # the user's files, by absolute path: `bequest evaluate` reads them again from anywhere
        data = config.data.model_dump(mode="json")
        for key in ("train", "validation", "test"):
            if data[key] and not data[key].startswith("hub:"):
                data[key] = str(Path(data[key]).expanduser().resolve())
        settings.update(data=data, seed=config.seed)
    return settings


def teacher_logits(config: RunConfig, teacher: nn.Module, data: Encoded, pad_token_id: int) -> torch.Tensor:
    """The teacher's logits on every example of `data`, computed once and cached on disk (under DDP
    by every process: each writes the same file atomically, so none reads a partial one)."""
    key = _key(weights_fingerprint(teacher), data.fingerprint())
    path = cache_root(config) / "logits" / f"{key}.safetensors"

    def compute() -> dict:
        return {"logits": predict(teacher, data, config.eval.batch_size, pad_token_id, desc="teacher logits")}

    return torch.from_numpy(cached_arrays(path, key, compute)["logits"])
