"""`bequest evaluate`: re-score an exported folder with the settings it was scored with at export.

GLUE and SQuAD models are scored on their task's dev set(s) (local files or the hub). A model of a
task on the user's own files is scored on the validation or test split of the data its record names
(or of another recipe's data section): its classes are read from that data again and must be the
model's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from bequest.data.tasks import get_task
from bequest.data_config import DataConfig, QAConfig
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


def _user_data(task, record: dict, recipe, model_dir: Path, model_config) -> tuple[object, DataConfig, int]:
    """The task and data section a generic task's model is scored on: the recipe's, else the one recorded at export."""
    if recipe is not None:
        data, seed = recipe.data, recipe.seed
    elif "data" in record:
        data, seed = DataConfig(**record["data"]), record.get("seed", 0)
    else:
        raise BequestError(f"{model_dir} records no data for {task.name} (no bequest.json from this bequest): give "
                           "--recipe with the data section to score it on")
    resolved = task.kind.resolve(task, data, seed)
    names = [model_config.id2label[i] for i in range(len(model_config.id2label))] if resolved.label_names else []
    if resolved.label_names and tuple(names) != resolved.label_names:
        raise BequestError(f"the data's labels ({', '.join(resolved.label_names[:8])}) are not {model_dir}'s "
                           f"({', '.join(names[:8])}): score it on data with the labels it was trained on")
    return resolved, data, seed


@dataclass
class Scoring:
    """An exported folder's model with the data and settings it was scored with at export."""

    folder: Path
    record: dict
    task: object
    model: nn.Module
    tokenizer: object
    loaded: object  # TaskData: the dev splits, the test split, the data files' hashes
    max_length: int
    batch_size: int
    qa: QAConfig

    def scores(self, model: nn.Module, split: str = "validation") -> dict[str, float]:
        splits, primary = (self.loaded.dev, None) if split != "test" else ({"test": self.loaded.test}, "test")
        return evaluate(model, self.task, splits, self.batch_size, self.tokenizer.pad_token_id, self.qa, primary=primary)


def scoring(model_dir, task_name: str | None, data_dir: str | None, max_length: int | None, batch_size: int | None,
            split: str = "validation", recipe=None) -> Scoring:
    """Load an exported folder and the data it is scored on, with the settings it was scored with (bequest.json)."""
    model_dir = Path(model_dir)
    record = read_record(model_dir) or {}
    task_name = task_name or (recipe.task if recipe is not None else None) or record.get("task")
    if not task_name:
        raise BequestError(f"{model_dir} records no task (no bequest.json): give --task")
    task = get_task(task_name)
    if split == "test" and not task.from_data:
        raise BequestError(f"{task.name} is scored on its dev set(s): --split test is for tasks on your own files "
                           "(data.test)")
    config = load_config(str(model_dir))
    max_length = max_length or record.get("max_length", 128)
    batch_size = batch_size or record.get("eval_batch_size", 32)
    if max_tokens(config) is not None and max_length > max_tokens(config):
        raise BequestError(f"--max-length {max_length} is longer than {model_dir} takes ({max_tokens(config)} tokens): "
                           f"give at most {max_tokens(config)}")
    seed, data = record.get("seed", 0), None
    if task.from_data:
        task, data, seed = _user_data(task, record, recipe, model_dir, config)
        if split == "test" and not data.test:
            raise BequestError(f"the data of {model_dir} has no data.test: give --recipe with one, or --split validation")
        data = data.model_copy(update={"max_length": max_length})
    tokenizer = load_tokenizer(str(model_dir), config)
    model, has_head = load_task_model(str(model_dir), task)
    if not has_head:
        raise BequestError(f"{model_dir} has no {task.name} head: evaluate a model trained on {task.name}")
    if record.get("task") and get_task(record["task"]).name != task.name:
        warn(f"{model_dir} was trained on {record['task']} (its bequest.json), scoring it on {task.name} as asked")
    # SQuAD: the same windows, answer reading and (for a dev set split by article) held-out part as at export
    qa = QAConfig(**record.get("qa", {}))
    loaded = load_task_data(task, data_dir, tokenizer, max_length, None, seed=seed, with_train=False,
                            max_eval_examples=record.get("max_eval_examples"), stride=qa.stride,
                            split_by_article=record.get("split_by_article"), data=data)
    return Scoring(model_dir, record, task, model, tokenizer, loaded, max_length, batch_size, qa)


def evaluate_folder(model_dir, task_name: str | None, data_dir: str | None, max_length: int | None,
                    batch_size: int | None, output: Path | None, overwrite: bool, split: str = "validation",
                    recipe=None) -> dict[str, float]:
    """Re-score an exported folder with the settings it was scored with at export (recorded in bequest.json)."""
    model_dir = Path(model_dir)
    record = read_record(model_dir) or {}
    task_name = task_name or (recipe.task if recipe is not None else None) or record.get("task")
    stem = f"eval_{get_task(task_name).name}" if task_name else "eval"
    stem += "_test" if split == "test" else ""
    output = Path(output or model_dir / f"{stem}.json")
    if output.is_dir():
        raise BequestError(f"--output {output} is a folder: give the path of the JSON file to write")
    if output.exists() and not overwrite:
        raise BequestError(f"{output} already exists: pass --overwrite to replace it, or --output to write elsewhere")
    setup = scoring(model_dir, task_name, data_dir, max_length, batch_size, split, recipe)
    scores = setup.scores(setup.model, split)
    write_json(output, {"task": setup.task.name, "model": str(model_dir), "max_length": setup.max_length, "split": split,
                        "batch_size": setup.batch_size, "dev" if split != "test" else "test": scores,
                        "data_files": setup.loaded.file_hashes})
    for name, value in scores.items():
        print(f"{name}: {value:.4f}")
    print(f"written to {output}")
    return scores
