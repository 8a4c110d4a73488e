"""Tokenised examples, dynamic padding, and the order batches are drawn in."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass

import numpy as np
import torch

FINGERPRINT_CHUNK = 10_000  # rows hashed at a time: the same digest whatever holds the rows


class Batched:
    """Training data drawn in batches of examples of similar length (`training_batches` on its `lengths`);
    data whose examples belong together in a batch (pairs) overrides the method."""

    def training_batches(self, batch_size: int, seed: int, epoch: int, group_by_length: bool) -> list[list[int]]:
        return training_batches(self.lengths, batch_size, seed, epoch, group_by_length)


@dataclass
class Encoded(Batched):
    """A tokenised split: model inputs as unpadded lists, plus the labels."""

    inputs: dict[str, list[list[int]]]
    labels: list

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.inputs["input_ids"]]

    def rows(self, indices) -> dict[str, list]:
        """The chosen examples' inputs and labels, unpadded: {input name: rows, "labels": labels}."""
        chosen = {name: [rows[i] for i in indices] for name, rows in self.inputs.items()}
        return {**chosen, "labels": [self.labels[i] for i in indices]}

    def batch(self, indices, pad_token_id: int) -> dict[str, torch.Tensor]:
        """Pad the chosen examples to the longest among them (not to max_length)."""
        rows = self.rows(indices)
        longest = max(len(ids) for ids in rows["input_ids"])
        batch = {}
        for name in self.inputs:
            fill = pad_token_id if name == "input_ids" else 0
            batch[name] = torch.tensor([row + [fill] * (longest - len(row)) for row in rows[name]], dtype=torch.long)
        batch["labels"] = self.label_tensor(rows["labels"], longest)
        batch["index"] = torch.tensor(list(indices), dtype=torch.long)
        return batch

    def label_tensor(self, labels: list, longest: int) -> torch.Tensor:
        """The chosen examples' labels (one per example; per-token kinds pad theirs to `longest`)."""
        return torch.tensor(labels)

    def select(self, indices) -> Encoded:
        return type(self)(inputs={k: [rows[i] for i in indices] for k, rows in self.inputs.items()},
                          labels=[self.labels[i] for i in indices])

    def fingerprint(self) -> str:
        """A hash of every model input and label: names the data a fine-tuned teacher or a cached
        teacher output belongs to, so flipping one label or one token makes a new one. Rows are hashed
        in chunks, so a split held in a table (`TableEncoded`) with the same content has the same hash."""
        digest = hashlib.sha256()
        for start in range(0, len(self), FINGERPRINT_CHUNK):
            rows = self.rows(range(start, min(start + FINGERPRINT_CHUNK, len(self))))
            for name in sorted(rows):
                digest.update(name.encode())
                _hash_rows(digest, rows[name])
        return digest.hexdigest()


def _hash_rows(digest, rows: list) -> None:
    """Values and row lengths of a column: lists of numbers (ragged or not), or one number per row."""
    if rows and isinstance(rows[0], list):
        digest.update(np.asarray([len(row) for row in rows], dtype=np.int64).tobytes())
        rows = list(itertools.chain.from_iterable(rows))
    digest.update(np.asarray(rows, dtype=np.float64).tobytes())


def subsample(size: int, limit: int | None, seed: int) -> list[int]:
    """A random subset of `limit` example indices, kept in file order; all indices if no limit."""
    if limit is None or limit >= size:
        return list(range(size))
    generator = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(size, generator=generator)[:limit].tolist())


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors a model's forward takes, without the labels, example indices and labelled flags a batch also carries."""
    return {k: v for k, v in batch.items() if k not in ("labels", "index", "labelled")}


def encode(tokenizer, text_a: list[str], text_b: list[str] | None, labels: list, max_length: int) -> Encoded:
    pairs = (text_a, text_b) if text_b is not None else (text_a,)
    tokens = tokenizer(*pairs, truncation=True, max_length=max_length)
    inputs = {name: tokens[name] for name in tokenizer.model_input_names if name in tokens}
    return Encoded(inputs=inputs, labels=list(labels))


def training_batches(lengths: list[int], batch_size: int, seed: int, epoch: int, group_by_length: bool) -> list[list[int]]:
    """The batches of one epoch, a pure function of (seed, epoch) so a resumed run sees the same order.

    With `group_by_length` (as transformers' Trainer does it) the shuffled examples are cut into
    mega-batches of 50 batches, each sorted by length, so a batch holds examples of similar
    length and padding stays small; the batch order is shuffled again.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    if group_by_length:
        mega = 50 * batch_size
        order = [i for start in range(0, len(order), mega) for i in sorted(order[start : start + mega], key=lambda i: -lengths[i])]
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if group_by_length:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def inference_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Batches for prediction: sorted by length, so little padding; results go back by index."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
