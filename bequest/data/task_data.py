"""A task's splits (GLUE or SQuAD), read once, subsampled reproducibly, and tokenised."""

from __future__ import annotations

from dataclasses import dataclass, field

from bequest.data.features import Encoded, encode, subsample
from bequest.data.glue import glue_split_path, load_glue_split
from bequest.data.squad import load_squad_data
from bequest.data.tasks import TaskSpec
from bequest.errors import BequestError
from bequest.io import sha256_file


@dataclass
class TaskData:
    task: TaskSpec
    train: Encoded
    dev: dict[str, Encoded]
    file_hashes: dict[str, str] = field(default_factory=dict)


def _encode_split(dataset, tokenizer, max_length: int, keep: list[int] | None = None) -> Encoded:
    if keep is not None and len(keep) < len(dataset):
        dataset = dataset.select(keep)
    columns = dataset.to_dict()
    pair = any(b is not None for b in columns["text_b"])
    return encode(tokenizer, columns["text_a"], columns["text_b"] if pair else None, columns["label"], max_length)


def load_task_data(task: TaskSpec, data_dir: str | None, tokenizer, max_length: int,
                   max_train_examples: int | None, seed: int, with_train: bool = True, max_eval_examples: int | None = None,
                   stride: int = 128, split_by_article: float | None = None) -> TaskData:
    """Read the training split (optional) and every dev split of `task`; record the files' hashes.

    `stride` and `split_by_article` concern SQuAD only (see `bequest.data.squad`)."""
    if task.question_answering:
        train, dev, hashes = load_squad_data(task, data_dir, tokenizer, max_length, stride, max_train_examples,
                                             max_eval_examples, split_by_article, seed, with_train)
        return TaskData(task=task, train=train, dev={"dev": dev}, file_hashes=hashes)
    splits = (("train",) if with_train else ()) + task.dev_splits
    raw = {split: load_glue_split(task, split, data_dir) for split in splits}
    if data_dir is None:  # the hub's own content fingerprint stands in for a file hash
        hashes = {f"hub:{task.hub_name}/{s}": raw[s]._fingerprint for s in splits}
    else:
        hashes = {str(path): sha256_file(path) for path in (glue_split_path(task, s, data_dir) for s in splits)}
    train = None
    if with_train:
        keep = subsample(len(raw["train"]), max_train_examples, seed)
        train = _encode_split(raw["train"], tokenizer, max_length, keep)
    dev = {split: _encode_split(raw[split], tokenizer, max_length, subsample(len(raw[split]), max_eval_examples, seed))
           for split in task.dev_splits}
    for split, encoded in dev.items():
        if task.is_regression and len(encoded) < 2:  # a correlation of one pair is undefined
            where = glue_split_path(task, split, data_dir) if data_dir else f"the hub's {task.name} {split} split"
            raise BequestError(f"{where} gives {len(encoded)} scored pair(s) to evaluate on: {', '.join(task.metrics)} "
                               "need at least 2 (raise data.max_eval_examples, or use the whole dev file)")
    return TaskData(task=task, train=train, dev=dev, file_hashes=hashes)
