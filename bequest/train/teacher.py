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
from pathlib import Path

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from torch import nn

from bequest import __version__
from bequest.config import RunConfig
from bequest.data.features import Encoded
from bequest.data.task_data import TaskData
from bequest.eval.evaluate import evaluate
from bequest.eval.predict import predict
from bequest.io import building_dir, replacing, write_json
from bequest.models.loading import load_task_model, weights_fingerprint
from bequest.objectives.logits import batch_task_loss
from bequest.train.loop import train
from bequest.train.runtime import resolved_precision


def cache_root(config: RunConfig) -> Path:
    return Path(config.cache_dir or os.environ.get("BEQUEST_CACHE") or Path.home() / ".cache" / "bequest").expanduser()


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def label_maps(task) -> dict:
    """Class names for the config of a task model; QA heads have none (start and end are not classes)."""
    if task.question_answering:
        return {}
    names = task.label_names or ("score",)
    return {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}


def load_teacher(config: RunConfig, task) -> tuple[nn.Module, bool]:
    """The teacher as a classifier for `task`, and whether its task head came from the checkpoint."""
    torch.manual_seed(config.seed)  # a freshly created task head starts the same every time
    return load_task_model(config.teacher.model, task, **label_maps(task))


def prepare_teacher(config: RunConfig, data: TaskData, tokenizer, accelerator: Accelerator,
                    model: nn.Module, has_head: bool) -> tuple[nn.Module, dict]:
    """Return the task-ready teacher (fine-tuned if it needs to be) and a record of where it came from."""
    task, settings = data.task, config.teacher.finetune
    if settings.when == "never" or (settings.when == "auto" and has_head):
        return model, {"model": config.teacher.model, "finetuned_by_bequest": False}

    key = _key(__version__, weights_fingerprint(model), task.name, data.train.fingerprint(), settings.model_dump(), config.seed,
               resolved_precision(config.runtime))
    folder = cache_root(config) / "teachers" / f"{task.name}-{key}"
    record = {"model": config.teacher.model, "finetuned_by_bequest": True, "path": str(folder)}
    if (folder / "bequest_teacher.json").is_file():
        model, _ = load_task_model(str(folder), task)
        return model, {**record, "cache_hit": True}

    partial = folder.with_name(folder.name + ".partial")
    pad = tokenizer.pad_token_id
    log = train(
        model,
        data.train,
        batch_task_loss,
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
        with building_dir(folder) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            write_json(tmp / "bequest_teacher.json", {**record, "task": task.name, "seed": config.seed,
                                                       "finetune": settings.model_dump(), "history": history})
        shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()
    return model, {**record, "cache_hit": False, "history": history, "train_seconds": round(log["seconds"], 1)}


def teacher_logits(config: RunConfig, teacher: nn.Module, data: Encoded, pad_token_id: int) -> torch.Tensor:
    """The teacher's logits on every example of `data`, computed once and cached on disk (under DDP
    by every process: each writes the same file atomically, so none reads a partial one)."""
    path = cache_root(config) / "logits" / f"{_key(weights_fingerprint(teacher), data.fingerprint())}.safetensors"
    if path.is_file():
        return load_file(str(path))["logits"]
    logits = torch.from_numpy(predict(teacher, data, config.eval.batch_size, pad_token_id, desc="teacher logits"))
    with replacing(path) as tmp:
        save_file({"logits": logits}, str(tmp))
    return logits
