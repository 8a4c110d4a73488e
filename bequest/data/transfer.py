"""A transfer set: extra unlabelled texts a student learns from the teacher's outputs only.

Logit KD needs no labels, so a student can learn from far more text than the labelled set: the
teacher's logits on the transfer texts are its targets (cached like the training set's), and every
task loss skips them. The transfer rows follow the labelled ones in one training set; a batch says
which of its examples are labelled (`labelled`), and the teacher is fine-tuned on the labelled rows only.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from bequest.data.augment import augmented
from bequest.data.features import Encoded, encode, subsample
from bequest.data.user_files import HUB, check_columns, read_table
from bequest.errors import BequestError


class WithTransfer(Encoded):
    """The labelled training rows, then the transfer rows (their label a placeholder no loss reads)."""

    def __init__(self, labelled: Encoded, transfer: Encoded):
        self.labelled, self.transfer = labelled, transfer

    def __len__(self) -> int:
        return len(self.labelled) + len(self.transfer)

    @property
    def inputs(self) -> dict:
        return self.labelled.inputs  # the input names; rows are read through `rows`

    @property
    def labels(self) -> list:
        return list(self.labelled.labels) + list(self.transfer.labels)

    @property
    def lengths(self) -> list[int]:
        return list(self.labelled.lengths) + list(self.transfer.lengths)

    def _split(self, indices) -> tuple[list[int], list[int]]:
        first = len(self.labelled)
        return [i for i in indices if i < first], [i - first for i in indices if i >= first]

    def rows(self, indices) -> dict[str, list]:
        indices = list(indices)
        own, extra = self._split(indices)
        parts = (self.labelled.rows(own) if own else None, self.transfer.rows(extra) if extra else None)
        position = {"own": iter(range(len(own))), "extra": iter(range(len(extra)))}
        merged = {}
        for i in indices:  # the caller's order, whichever part a row comes from
            part, which = (parts[0], "own") if i < len(self.labelled) else (parts[1], "extra")
            row = next(position[which])
            for name, values in part.items():
                merged.setdefault(name, []).append(values[row])
        return merged

    def label_tensor(self, labels: list, longest: int) -> torch.Tensor:
        return self.labelled.label_tensor(labels, longest)

    def batch(self, indices, pad_token_id: int) -> dict[str, torch.Tensor]:
        batch = super().batch(indices, pad_token_id)
        batch["labelled"] = torch.tensor([i < len(self.labelled) for i in indices], dtype=torch.bool)
        return batch

    def select(self, indices) -> WithTransfer:
        own, extra = self._split(sorted(indices))
        return WithTransfer(self.labelled.select(own), self.transfer.select(extra))

    def fingerprint(self) -> str:
        """Both parts' hashes: the same rows moved between labelled and transfer make another one."""
        parts = f"{self.labelled.fingerprint()}+transfer:{self.transfer.fingerprint()}"
        return hashlib.sha256(parts.encode()).hexdigest()


def transfer_texts(data, pair: bool) -> tuple[list[str], list[str] | None]:
    """The transfer set's texts (and second texts for a pair task): a .txt file holds one text a line;
    a table or hub dataset holds data.text_column (and data.text_pair_column)."""
    source = data.transfer
    if not source.startswith(HUB) and Path(source).suffix.lower() == ".txt":
        path = Path(source).expanduser()
        if pair:
            raise BequestError(f"data.transfer: {path} is a text file, but the task takes pairs of texts: give a table "
                               "(.csv .tsv .json .jsonl .parquet) with data.text_column and data.text_pair_column")
        if not path.is_file():
            raise BequestError(f"data.transfer: {path} not found: give a .txt file (a text a line), a table or hub:<dataset id>")
        try:
            texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError as error:
            raise BequestError(f"data.transfer: {path} is not UTF-8 text (byte {error.start}): save it as UTF-8") from None
        if not texts:
            raise BequestError(f"data.transfer: {path} holds no text")
        return texts, None
    table = read_table(source, data.transfer_split, data.hub_config, "transfer")
    if pair and data.text_pair_column is None:
        raise BequestError(f"data.transfer {source}: the task takes pairs of texts: name the table's second text column "
                           "in data.text_pair_column (and the first in data.text_column)")
    columns = {"text_column": data.text_column, "text_pair_column": data.text_pair_column if pair else None}
    check_columns(table, columns, f"data.transfer {source}")
    texts = [str(text) for text in table[data.text_column]]
    return texts, [str(text) for text in table[data.text_pair_column]] if pair else None


def with_transfer(labelled: Encoded, data, pair: bool, tokenizer, seed: int, teacher, source: str) -> WithTransfer:
    """The labelled training set followed by data.transfer's texts (a seeded `data.transfer_ratio` x its size at
    most) and data.augment's edited copies of it."""
    parts = []
    if data.transfer is not None:
        texts, pairs = transfer_texts(data, pair)
        limit = None if data.transfer_ratio is None else max(1, round(data.transfer_ratio * len(labelled)))
        keep = subsample(len(texts), limit, seed)
        texts, pairs = [texts[i] for i in keep], [pairs[i] for i in keep] if pairs is not None else None
        placeholder = labelled.rows([0])["labels"][0]  # the right type for the batch's label tensor; never read
        parts.append(encode(tokenizer, texts, pairs, [placeholder] * len(texts), data.max_length))
    if data.augment is not None:
        parts.append(augmented(labelled, data.augment, tokenizer, teacher, source, seed))
    return WithTransfer(labelled, parts[0] if len(parts) == 1 else concatenated(parts))


def concatenated(parts: list[Encoded]) -> Encoded:
    return Encoded(inputs={name: [row for part in parts for row in part.inputs[name]] for name in parts[0].inputs},
                   labels=[label for part in parts for label in part.labels])
