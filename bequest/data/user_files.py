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


def read_table(source: str, split: str, hub_config: str | None, what: str, cache_dir: str | None = None):
    """One split as a `datasets.Dataset`: a local file (by its suffix) or `hub:<dataset id>`, kept (with what
    `datasets.map` makes of it) under `cache_dir` (default: the datasets library's own cache)."""
    import datasets  # imported when data is read: a refused command never pays for it

    if source.startswith(HUB):
        try:
            return datasets.load_dataset(source[len(HUB):], hub_config, split=split, cache_dir=cache_dir)
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
        table = datasets.load_dataset(builder, data_files=str(path), split="train", cache_dir=cache_dir, **options)
    except Exception as error:  # pandas / pyarrow parse errors name the row; keep their first line
        reason = (str(error).splitlines() or [""])[0][:200]
        raise BequestError(f"data.{what}: {path} cannot be read as {path.suffix} ({type(error).__name__}: {reason})") from None
    if len(table) == 0:
        raise BequestError(f"data.{what}: {path} holds no rows")
    return table


def source_hashes(data) -> dict[str, str]:
    """The sha256 of each local file the data section names; a hub dataset is named by its id (its own fingerprint
    is not known before loading)."""
    from bequest.io import sha256_file

    return {source: source if source.startswith(HUB) else sha256_file(source)
            for source in (data.train, data.validation, data.test) if source}


def check_columns(table, columns: dict[str, str | None], where: str) -> None:
    found = table.column_names
    for key, name in columns.items():
        if name is not None and name not in found:
            raise BequestError(f"{where} has no column {name!r} (data.{key}); its columns are {', '.join(found)}: "
                               f"set data.{key} to one of them")


def declared_names(table, data) -> list[str] | None:
    """The class names a hub dataset declares for its label column (a ClassLabel, or a sequence of them)."""
    feature = table.features[data.label_column]
    return getattr(feature, "names", None) or getattr(getattr(feature, "feature", None), "names", None)


def label_values(table, data) -> list:
    """The label column as Python values (see `as_labels`)."""
    return as_labels(list(table[data.label_column]), declared_names(table, data), data.label_separator)


def as_labels(values: list, names: list[str] | None, separator: str | None) -> list:
    """Raw label values as labels: a ClassLabel's ids (or a sequence of them) as its `names`, and a string
    cut at `separator` as a list of labels."""
    if names:
        values = [[names[i] for i in value] if isinstance(value, list) else names[value] for value in values]
    if separator:
        values = [value if isinstance(value, list) else [part.strip() for part in str(value).split(separator) if part.strip()]
                  for value in values]
    return values


KIND_WORDS = {"classification": "one class a row", "regression": "scores", "multi_label": "lists of labels"}


def _names(values: list, where: str) -> tuple[list[str], str]:
    """Class names of a label column (sorted: integers numerically, strings alphabetically) and the kind of task
    they make: classification, regression (numbers with decimals) or multi_label (a list of labels per row)."""
    kinds = {type(v) for v in values}
    if kinds == {list}:
        return sorted({str(label) for row in values for label in row}), "multi_label"
    if kinds == {bool}:  # JSON true/false: two classes by name
        return sorted({str(v) for v in values}), "classification"
    if kinds <= {float, int} and float in kinds and any(float(v) != int(v) for v in values):
        return [], "regression"
    if kinds <= {int, float}:
        return [str(v) for v in sorted({int(v) for v in values})], "classification"
    if kinds == {str}:
        return sorted(set(values)), "classification"
    raise BequestError(f"{where}: the label column mixes {' and '.join(sorted(k.__name__ for k in kinds))} values: "
                       "give every row the same kind of label (for several labels a row, lists, or name "
                       "data.label_separator)")


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


def user_task(spec: TaskSpec, data, seed: int, cache_dir: str | None = None):
    """The task a user's files define (`spec` is the generic text-classification / text-regression preset):
    its classes or scores read from the training labels. Returns the task and the splits' raw tables."""
    train = read_table(data.train, data.train_split, data.hub_config, "train", cache_dir)
    columns = {"text_column": data.text_column, "text_pair_column": data.text_pair_column, "label_column": data.label_column}
    check_columns(train, columns, f"data.train {data.train}")
    labels = label_values(train, data)
    names, kind_name = _names(labels, f"data.train {data.train}")
    names = declared_names(train, data) or names  # the dataset's own order of its classes, when it declares them
    if spec.kind_name == "regression":  # text-regression: integer scores are scores too
        if kind_name != "regression" and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in labels):
            raise BequestError(f"data.train {data.train}: task text-regression needs a number in every row of column "
                               f"{data.label_column!r}: fix the rows, or use task: text-classification for named classes")
        kind_name = "regression"
    tables = {"train": train}
    if data.validation:
        tables["validation"] = read_table(data.validation, data.validation_split, data.hub_config, "validation", cache_dir)
    else:  # label sets and scores are held out at random, classes in proportion
        keep, held = stratified_split(labels, data.validation_fraction, seed, kind_name == "classification")
        tables = {"train": train.select(keep), "validation": train.select(held)}
    if data.test:
        tables["test"] = read_table(data.test, data.test_split, data.hub_config, "test", cache_dir)
    for split, table in tables.items():
        if split == "train":
            continue
        where = f"data.{split} {getattr(data, split) or data.train}"
        check_columns(table, columns, where)
        split_names, split_kind = _names(label_values(table, data), where)
        if split_kind != kind_name and not (kind_name == "regression" and split_kind == "classification"):
            raise BequestError(f"{where}: its labels are {KIND_WORDS[split_kind]} but data.train's are "
                               f"{KIND_WORDS[kind_name]}: give every file the same kind of label")
        if kind_name != "regression":
            check_seen(split_names, names, f"data.{split}", "label")
    if kind_name == "regression":
        task = replace(spec, kind_name="regression", label_names=(), metrics=("pearson", "spearmanr"), main_metric="pearson")
    elif kind_name == "multi_label":
        task = replace(spec, kind_name="multi_label", label_names=tuple(names), metrics=("f1_micro", "f1_macro", "accuracy"),
                       main_metric="f1_micro")
    else:
        metrics = ("accuracy", "f1_macro") + (("f1", "matthews_correlation") if len(names) == 2 else ())
        task = replace(spec, kind_name="classification", label_names=tuple(names), metrics=metrics, main_metric="accuracy")
    return replace(task, dev_splits=("validation",)), tables


def encode_table(table, data, task: TaskSpec, tokenizer, keep: list[int] | None = None):
    """A split's rows tokenised through `datasets.map` (cached), their labels as class indices, multi-hot rows or
    scores."""
    from bequest.data.table_features import encode_dataset

    if keep is not None and len(keep) < len(table):
        table = table.select(keep)
    names, separator = declared_names(table, data), data.label_separator
    index = {name: i for i, name in enumerate(task.label_names)}

    def to_labels(batch: dict) -> list:
        values = as_labels(batch[data.label_column], names, separator)
        if task.is_regression:
            return [float(v) for v in values]
        if task.multi_label:  # a multi-hot row per example
            return [[float(name in set(map(str, row))) for name in task.label_names] for row in values]
        return [index[str(v)] for v in values]

    return encode_dataset(table, tokenizer, data.text_column, data.text_pair_column, to_labels, data.max_length,
                          data.num_proc)
