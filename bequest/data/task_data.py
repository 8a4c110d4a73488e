"""A GLUE task's splits, read once, subsampled reproducibly, and tokenised."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bequest.data.features import Encoded, encode
from bequest.data.glue import glue_split_path, load_glue_split, sha256_file
from bequest.data.tasks import TaskSpec


@dataclass
class TaskData:
    task: TaskSpec
    train: Encoded
    dev: dict[str, Encoded]
    file_hashes: dict[str, str] = field(default_factory=dict)


def subsample(size: int, limit: int | None, seed: int) -> list[int]:
    """A random subset of `limit` example indices, kept in file order; all indices if no limit."""
    if limit is None or limit >= size:
        return list(range(size))
    generator = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(size, generator=generator)[:limit].tolist())


def _encode_split(dataset, tokenizer, max_length: int, keep: list[int] | None = None) -> Encoded:
    if keep is not None and len(keep) < len(dataset):
        dataset = dataset.select(keep)
    columns = dataset.to_dict()
    pair = any(b is not None for b in columns["text_b"])
    return encode(tokenizer, columns["text_a"], columns["text_b"] if pair else None, columns["label"], max_length)


def load_task_data(task: TaskSpec, data_dir: str | None, tokenizer, max_length: int,
                   max_train_examples: int | None, seed: int, with_train: bool = True) -> TaskData:
    """Read the training split (optional) and every dev split of `task`; record the files' hashes."""
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
    dev = {split: _encode_split(raw[split], tokenizer, max_length) for split in task.dev_splits}
    return TaskData(task=task, train=train, dev=dev, file_hashes=hashes)
