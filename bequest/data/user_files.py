"""A user's own labelled text: CSV, TSV, JSON, JSON Lines or Parquet files, or a hub dataset, read
through `datasets`, with the columns the recipe names (`data.text_column`, `data.text_pair_column`,
`data.label_column`). The labels say what the task is: their names (strings or integers, sorted)
become the model's classes, and numbers with decimals make it a regression. Without a validation
file, a seeded, stratified `data.validation_fraction` of the training rows is held out.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from bequest.data.tasks import TaskSpec
from bequest.errors import BequestError

READERS = {".csv": ("csv", {}), ".tsv": ("csv", {"delimiter": "\t", "quoting": 3}), ".json": ("json", {}),
           ".jsonl": ("json", {}), ".parquet": ("parquet", {})}
HUB = "hub:"


def read_table(source: str, split: str, hub_config: str | None, what: str):
    """One split as a `datasets.Dataset`: a local file (by its suffix) or `hub:<dataset id>`."""
    import datasets  # imported when data is read: a refused command never pays for it

    if source.startswith(HUB):
        try:
            return datasets.load_dataset(source[len(HUB):], hub_config, split=split)
        except Exception as error:  # no network, unknown id, missing split: one line either way
            reason = (str(error).splitlines() or [""])[0][:200]
            raise BequestError(f"data.{what}: cannot load {source} ({type(error).__name__}: {reason}): check the id, "
                               "data.hub_config and the split, or give a local file") from None
    path = Path(source).expanduser()
    if path.suffix.lower() not in READERS:
        raise BequestError(f"data.{what}: {path} is a {path.suffix or 'suffix-less'} file: give one of {', '.join(READERS)}")
    if not path.is_file():
        raise BequestError(f"data.{what}: {path} not found: give the path of a {', '.join(READERS)} file or hub:<dataset id>")
    builder, options = READERS[path.suffix.lower()]
    if builder == "csv":
        options = {**options, "keep_default_na": False}  # "NA" and "null" are text, not missing values
    try:
        table = datasets.load_dataset(builder, data_files=str(path), split="train", **options)
    except Exception as error:  # pandas / pyarrow parse errors name the row; keep their first line
        reason = (str(error).splitlines() or [""])[0][:200]
        raise BequestError(f"data.{what}: {path} cannot be read as {path.suffix} ({type(error).__name__}: {reason})") from None
    if len(table) == 0:
        raise BequestError(f"data.{what}: {path} holds no rows")
    return table


def check_columns(table, columns: dict[str, str | None], where: str) -> None:
    found = table.column_names
    for key, name in columns.items():
        if name is not None and name not in found:
            raise BequestError(f"{where} has no column {name!r} (data.{key}); its columns are {', '.join(found)}: "
                               f"set data.{key} to one of them")


def _names(values: list, where: str) -> tuple[list[str], bool]:
    """Class names of a label column (sorted: integers numerically, strings alphabetically) and whether
    the labels are scores (numbers with decimals)."""
    kinds = {type(v) for v in values}
    if kinds == {bool}:  # JSON true/false: two classes by name
        return sorted({str(v) for v in values}), False
    if kinds <= {float, int} and float in kinds and any(float(v) != int(v) for v in values):
        return [], True
    if kinds <= {int, float}:
        return [str(v) for v in sorted({int(v) for v in values})], False
    if kinds == {str}:
        return sorted(set(values)), False
    raise BequestError(f"{where}: the label column mixes {' and '.join(sorted(k.__name__ for k in kinds))} values: "
                       "give every row the same kind of label")


def stratified_split(labels: list, fraction: float, seed: int, classes: bool) -> tuple[list[int], list[int]]:
    """(train rows, held-out rows): the held-out rows take `fraction` of each class (of all rows for scores)."""
    generator = np.random.default_rng(seed)
    groups = {}
    for row, label in enumerate(labels):
        groups.setdefault(label if classes else 0, []).append(row)
    held = []
    for rows in groups.values():
        count = int(round(fraction * len(rows)))
        held += generator.permutation(rows)[:count].tolist()
    held = sorted(held)
    chosen = set(held)
    return [row for row in range(len(labels)) if row not in chosen], held


def check_seen(labels, known, where: str, what: str) -> None:
    """Every label of a scored split is one the model learned: an unseen one could never be predicted."""
    unseen = sorted(set(labels) - set(known))
    if unseen:
        raise BequestError(f"{where}: {what} {unseen[0]!r} never occurs in data.train (its {what}s: {', '.join(known[:12])}): "
                           "fix the row, or add examples of it to the training data")


def user_task(spec: TaskSpec, data, seed: int):
    """The task a user's files define (`spec` is the generic text-classification / text-regression preset):
    its classes or scores read from the training labels. Returns the task and the splits' raw tables."""
    train = read_table(data.train, data.train_split, data.hub_config, "train")
    columns = {"text_column": data.text_column, "text_pair_column": data.text_pair_column, "label_column": data.label_column}
    check_columns(train, columns, f"data.train {data.train}")
    labels = train[data.label_column]
    names, scores = _names(labels, f"data.train {data.train}")
    regression = scores or spec.kind_name == "regression"
    tables = {"train": train}
    if data.validation:
        tables["validation"] = read_table(data.validation, data.validation_split, data.hub_config, "validation")
    else:
        keep, held = stratified_split(labels, data.validation_fraction, seed, not regression)
        tables = {"train": train.select(keep), "validation": train.select(held)}
    if data.test:
        tables["test"] = read_table(data.test, data.test_split, data.hub_config, "test")
    for split, table in tables.items():
        if split != "train":
            source = getattr(data, split) or data.train
            check_columns(table, columns, f"data.{split} {source}")
            if not regression:
                check_seen([str(v) for v in table[data.label_column]], names, f"data.{split}", "label")
    if regression:
        task = replace(spec, kind_name="regression", label_names=(), metrics=("pearson", "spearmanr"), main_metric="pearson")
    else:
        metrics = ("accuracy", "f1_macro") + (("f1", "matthews_correlation") if len(names) == 2 else ())
        task = replace(spec, kind_name="classification", label_names=tuple(names), metrics=metrics, main_metric="accuracy")
    return replace(task, dev_splits=("validation",)), tables


def encode_table(table, data, task: TaskSpec, tokenizer, keep: list[int] | None = None):
    """A split's rows tokenised, their labels as class indices (or scores)."""
    from bequest.data.features import encode

    if keep is not None and len(keep) < len(table):
        table = table.select(keep)
    pairs = table[data.text_pair_column] if data.text_pair_column else None
    if task.is_regression:
        labels = [float(v) for v in table[data.label_column]]
    else:
        index = {name: i for i, name in enumerate(task.label_names)}
        labels = [index[str(v)] for v in table[data.label_column]]
    return encode(tokenizer, [str(t) for t in table[data.text_column]], [str(t) for t in pairs] if pairs else None,
                  labels, data.max_length)
