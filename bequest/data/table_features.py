"""A tokenised split held in a `datasets` Arrow table instead of Python lists.

`datasets.map` tokenises in batches (in `num_proc` processes) and writes the result to a cache file
named by the fingerprint of the source and of the tokenising function, so a second run reads it
back instead of tokenising again, and a large file (MNLI's 400k rows) trains from a memory-mapped
table: a batch's rows are read when the batch is drawn, not held as Python objects.
"""

from __future__ import annotations

import numpy as np

from bequest.data.features import Encoded

LENGTH = "length"  # a column of each example's token count, written while tokenising


class TableEncoded(Encoded):
    """An `Encoded` split whose rows live in an Arrow table (columns: the model inputs, labels, length)."""

    def __init__(self, table, input_names: list[str]):
        self.table, self.input_names = table, list(input_names)

    def __len__(self) -> int:
        return len(self.table)

    @property
    def inputs(self) -> dict:
        return {name: self.table[name] for name in self.input_names}  # lazy columns: nothing is read here

    @property
    def labels(self):
        return self.table["labels"]

    @property
    def lengths(self) -> list[int]:
        return np.asarray(self.table[LENGTH]).tolist()

    def rows(self, indices) -> dict[str, list]:
        return self.table.select_columns([*self.input_names, "labels"])[list(indices)]

    def select(self, indices) -> TableEncoded:
        return TableEncoded(self.table.select(list(indices)), self.input_names)


def encode_dataset(dataset, tokenizer, text_column: str, pair_column: str | None, to_labels, max_length: int,
                   num_proc: int | None) -> TableEncoded:
    """Tokenise a `datasets.Dataset` by `datasets.map`: `to_labels` turns a batch of the label column into labels."""
    input_names = [name for name in tokenizer.model_input_names if name != "labels"]
    source_columns = dataset.column_names  # every source column is replaced by the encoded ones

    def tokenise(batch: dict) -> dict:
        texts = [str(text) for text in batch[text_column]]
        pairs = [str(text) for text in batch[pair_column]] if pair_column else None
        tokens = tokenizer(texts, pairs, truncation=True, max_length=max_length)
        encoded = {name: tokens[name] for name in input_names if name in tokens}
        return {**encoded, "labels": to_labels(batch), LENGTH: [len(ids) for ids in tokens["input_ids"]]}

    table = dataset.map(tokenise, batched=True, remove_columns=source_columns, num_proc=num_proc,
                        desc="tokenising", load_from_cache_file=True)
    return TableEncoded(table, [name for name in input_names if name in table.column_names])
