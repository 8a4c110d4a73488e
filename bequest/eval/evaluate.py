"""Dev-set scores of a model on a task: the numbers results.json, the model card and `bequest evaluate` report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from bequest.config import QAConfig
from bequest.data.features import Encoded
from bequest.data.task_data import load_task_data
from bequest.data.tasks import TaskSpec, get_task
from bequest.errors import BequestError, warn
from bequest.eval.metrics import compute_metrics
from bequest.eval.predict import predict
from bequest.eval.squad import best_answers, squad_metrics
from bequest.export import read_record
from bequest.io import write_json
from bequest.models.loading import (
    load_config,
    load_task_model,
    load_tokenizer,
    max_tokens,
)


def evaluate(model: nn.Module, task: TaskSpec, dev: dict[str, Encoded], batch_size: int, pad_token_id: int,
             qa: QAConfig | None = None) -> dict[str, float]:
    """Every metric of the task on every dev split; a second split's keys get its name (MNLI mismatched).
    `qa` says how SQuAD answers are read from the logits (default: QAConfig's defaults)."""
    scores = {}
    for split, data in dev.items():
        logits = predict(model, data, batch_size, pad_token_id, desc=f"evaluating {split}")
        suffix = "" if split == task.dev_splits[0] else "_" + split.removeprefix("dev_")
        if task.question_answering:
            qa = qa or QAConfig()
            answers = best_answers(data, logits, qa.n_best, qa.max_answer_length, task.unanswerable, qa.null_threshold)
            found = squad_metrics(answers, data.examples, task.unanswerable)
        else:
            found = compute_metrics(task, logits, np.asarray(data.labels))
        scores.update({name + suffix: value for name, value in found.items()})
    return scores


def evaluate_folder(model_dir, task_name: str, data_dir: str | None, max_length: int | None,
                    batch_size: int | None, output: Path | None, overwrite: bool) -> dict[str, float]:
    """Re-score an exported folder with the settings it was scored with at export (recorded in bequest.json)."""
    model_dir = Path(model_dir)
    task = get_task(task_name)
    output = Path(output or model_dir / f"eval_{task.name}.json")
    if output.is_dir():
        raise BequestError(f"--output {output} is a folder: give the path of the JSON file to write")
    if output.exists() and not overwrite:
        raise BequestError(f"{output} already exists: pass --overwrite to replace it, or --output to write elsewhere")
    config = load_config(str(model_dir))
    record = read_record(model_dir) or {}
    max_length = max_length or record.get("max_length", 128)
    batch_size = batch_size or record.get("eval_batch_size", 32)
    if max_tokens(config) is not None and max_length > max_tokens(config):
        raise BequestError(f"--max-length {max_length} is longer than {model_dir} takes ({max_tokens(config)} tokens): "
                           f"give at most {max_tokens(config)}")
    tokenizer = load_tokenizer(str(model_dir), config)
    model, has_head = load_task_model(str(model_dir), task)
    if not has_head:
        raise BequestError(f"{model_dir} has no {task.name} head: evaluate a model trained on {task.name}")
    if record.get("task") and get_task(record["task"]).name != task.name:
        warn(f"{model_dir} was trained on {record['task']} (its bequest.json), scoring it on {task.name} as asked")
    # SQuAD: the same windows, answer reading and (for a dev set split by article) held-out part as at export
    qa = QAConfig(**record.get("qa", {}))
    data = load_task_data(task, data_dir, tokenizer, max_length, None, seed=record.get("seed", 0), with_train=False,
                          max_eval_examples=record.get("max_eval_examples"), stride=qa.stride,
                          split_by_article=record.get("split_by_article"))
    scores = evaluate(model, task, data.dev, batch_size, tokenizer.pad_token_id, qa)
    write_json(output, {"task": task.name, "model": str(model_dir), "max_length": max_length,
                        "batch_size": batch_size, "dev": scores, "data_files": data.file_hashes})
    for name, value in scores.items():
        print(f"{name}: {value:.4f}")
    print(f"written to {output}")
    return scores
