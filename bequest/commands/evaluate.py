"""`bequest evaluate`: re-score an exported folder with the settings it was scored with at export."""

from __future__ import annotations

from pathlib import Path

from bequest.config import QAConfig
from bequest.data.tasks import get_task
from bequest.errors import BequestError, warn
from bequest.export import read_record
from bequest.io import write_json
from bequest.kinds import evaluate, load_task_data
from bequest.models.loading import (
    load_config,
    load_task_model,
    load_tokenizer,
    max_tokens,
)


def evaluate_folder(model_dir, task_name: str, data_dir: str | None, max_length: int | None,
                    batch_size: int | None, output: Path | None, overwrite: bool) -> dict[str, float]:
    """Re-score an exported folder with the settings it was scored with at export (recorded in bequest.json)."""
    model_dir = Path(model_dir)
    task = get_task(task_name)
    if task.from_data:
        raise BequestError(f"bequest evaluate re-scores GLUE and SQuAD models; a {task.name} model is scored on its "
                           "recipe's validation data by bequest run (re-scoring it here is not built yet)")
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
