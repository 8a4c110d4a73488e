"""Load GLUE splits from a local glue_data folder or the hub into one common column layout.

Every split comes back as a `datasets.Dataset` with exactly these columns, whatever the source:

* ``text_a``: the first (or only) sentence, as written in the file (no stripping).
* ``text_b``: the second sentence of a pair task; ``None`` on every row of a single-sentence task
  (CoLA, SST-2), so callers can pass ``text_b`` to a tokenizer only when it is not ``None``
  instead of feeding an empty string that would add a spurious second segment.
* ``label``: the class index into ``TaskSpec.label_names`` (int64), or the similarity score
  for STS-B (float32, the dtype regression losses expect).

Local files are read the way GLUE's own readers read them: tab-separated, with quoting disabled
(some sentences hold unbalanced quote characters), a UTF-8 byte-order mark ignored (MRPC), and
fields found by header name, except CoLA whose train/dev files have no header. Blank lines are
skipped; any other row whose column count differs from the header's is an error.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bequest.data.tasks import TaskSpec, normalize_task_name
from bequest.errors import BequestError

if TYPE_CHECKING:
    import datasets

HUB_DATASET = "nyu-mll/glue"


@dataclass(frozen=True)
class _Layout:
    """Where one task's fields sit: TSV header names (or positions, for headerless CoLA) and hub columns."""

    tsv_a: str | int
    tsv_b: str | int | None
    tsv_label: str | int
    hub_a: str
    hub_b: str | None
    width: int | None = None  # column count of a headerless file


_LAYOUTS: dict[str, _Layout] = {
    "cola": _Layout(3, None, 1, "sentence", None, width=4),
    "sst2": _Layout("sentence", None, "label", "sentence", None),
    "mrpc": _Layout("#1 String", "#2 String", "Quality", "sentence1", "sentence2"),
    "stsb": _Layout("sentence1", "sentence2", "score", "sentence1", "sentence2"),
    "qqp": _Layout("question1", "question2", "is_duplicate", "question1", "question2"),
    "mnli": _Layout("sentence1", "sentence2", "gold_label", "premise", "hypothesis"),
    "qnli": _Layout("question", "sentence", "label", "question", "sentence"),
    "rte": _Layout("sentence1", "sentence2", "label", "sentence1", "sentence2"),
    "wnli": _Layout("sentence1", "sentence2", "label", "sentence1", "sentence2"),
}


def takes_pairs(task: TaskSpec) -> bool:
    """Whether the GLUE task's examples are pairs of sentences (MRPC, STS-B, ...) rather than one (CoLA, SST-2)."""
    return _LAYOUTS[task.name].tsv_b is not None


def _features(task: TaskSpec) -> datasets.Features:
    """The same schema for file and hub loads, so downstream code never sees two shapes."""
    import datasets  # imported when data is read: a refused command never pays for it

    label = datasets.Value("float32") if task.is_regression else datasets.Value("int64")
    return datasets.Features(
        {"text_a": datasets.Value("string"), "text_b": datasets.Value("string"), "label": label}
    )


def _check_split(task: TaskSpec, split: str) -> None:
    """Only labelled splits are loadable: GLUE test files carry no labels."""
    if split != "train" and split not in task.dev_splits:
        allowed = ", ".join(("train",) + task.dev_splits)
        raise BequestError(f"unknown split {split!r} for {task.name}: use one of {allowed}")


def _task_folder(task: TaskSpec, data_dir: str | Path) -> Path:
    """Accept both the glue_data root (holding <TASK>/) and the task folder itself, as users pass either."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise BequestError(
            f"data dir {root} not found: point --data-dir at a folder with the glue_data/<TASK>/*.tsv layout"
        )
    folder = root / task.glue_dir
    if folder.is_dir():
        return folder
    if normalize_task_name(root.name) == task.name:
        return root
    raise BequestError(
        f"GLUE folder {folder} not found: point --data-dir at a folder with the glue_data/<TASK>/*.tsv layout"
        f" or at the {task.glue_dir} folder itself"
    )


def glue_split_path(task: TaskSpec, split: str, data_dir: str | Path) -> Path:
    """The file `load_glue_split` reads for this split, so runs can record which data they saw."""
    _check_split(task, split)
    path = _task_folder(task, data_dir) / f"{split}.tsv"
    if not path.is_file():
        needed = ", ".join(f"{name}.tsv" for name in ("train",) + task.dev_splits)
        raise BequestError(f"GLUE file {path} not found: the {task.glue_dir} folder must hold {needed}")
    return path


def load_glue_split(task: TaskSpec, split: str, data_dir: str | Path | None) -> datasets.Dataset:
    """Load one labelled split: from `data_dir` when given, else from the hub."""
    _check_split(task, split)
    if data_dir is None:
        return _load_from_hub(task, split)
    return _read_tsv(task, glue_split_path(task, split, data_dir))


def _read_tsv(task: TaskSpec, path: Path) -> datasets.Dataset:
    """Parse a GLUE TSV strictly, naming the file and line of the first bad row."""
    import datasets  # imported when data is read: a refused command never pays for it

    layout = _LAYOUTS[task.hub_name]
    label_index = {value: i for i, value in enumerate(task.label_names)}
    text_a: list[str] = []
    text_b: list[str | None] = []
    labels: list[int | float] = []
    # Headerless files (CoLA) have fixed positions; the others get theirs from the header row.
    has_header = isinstance(layout.tsv_label, str)
    columns = None if has_header else (layout.tsv_a, layout.tsv_b, layout.tsv_label)
    width = layout.width
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            for row in reader:
                if not row:
                    continue
                line = reader.line_num
                if columns is None:
                    columns, width = _header_columns(task, path, layout, row), len(row)
                    continue
                if len(row) != width:
                    raise BequestError(
                        f"GLUE file {path} line {line}: expected {width} tab-separated columns, found {len(row)}:"
                        f" fix or remove that row"
                    )
                a, b, lab = columns
                text_a.append(row[a])
                text_b.append(None if b is None else row[b])
                labels.append(_parse_label(task, path, line, row[lab], label_index))
    except UnicodeDecodeError as exc:
        raise BequestError(f"GLUE file {path} is not UTF-8 text ({exc.reason}): re-download it") from exc
    if not labels:
        raise BequestError(f"GLUE file {path} has no data rows: re-download the {task.glue_dir} folder")
    return datasets.Dataset.from_dict(
        {"text_a": text_a, "text_b": text_b, "label": labels}, features=_features(task)
    )


def _header_columns(task: TaskSpec, path: Path, layout: _Layout, header: list[str]) -> tuple[int, int | None, int]:
    """Positions of the needed fields, found by name so extra or reordered columns do not matter."""
    positions = {name: i for i, name in enumerate(header)}
    found = []
    for name in (layout.tsv_a, layout.tsv_b, layout.tsv_label):
        if name is None:
            found.append(None)
            continue
        if name not in positions:
            raise BequestError(
                f"GLUE file {path}: header has no {name!r} column (found {', '.join(header)}):"
                f" is this the {task.glue_dir} file?"
            )
        found.append(positions[name])
    return found[0], found[1], found[2]


def _parse_label(task: TaskSpec, path: Path, line: int, value: str, label_index: dict[str, int]) -> int | float:
    """Map a label cell to a class index (or a score for STS-B), refusing values the task does not define."""
    if task.is_regression:
        try:
            return float(value)
        except ValueError:
            raise BequestError(
                f"GLUE file {path} line {line}: score {value!r} is not a number: fix or remove that row"
            ) from None
    if value not in label_index:
        allowed = ", ".join(task.label_names)
        raise BequestError(
            f"GLUE file {path} line {line}: label {value!r} is not one of {allowed}: fix or remove that row"
        )
    return label_index[value]


def _load_from_hub(task: TaskSpec, split: str) -> datasets.Dataset:
    """Fetch the split from the hub and reshape it to the local-file columns."""
    import datasets  # imported when data is read: a refused command never pays for it

    layout = _LAYOUTS[task.hub_name]
    hub_split = split.replace("dev", "validation")
    try:
        raw = datasets.load_dataset(HUB_DATASET, task.hub_name, split=hub_split)
    except Exception as exc:  # no network, hub outage, missing cache: all mean "use local files"
        reason = (str(exc).splitlines() or [""])[0][:200]
        raise BequestError(
            f"the Hugging Face hub is unreachable for {HUB_DATASET}/{task.hub_name} ({type(exc).__name__}: {reason}):"
            f" pass --data-dir with a local glue_data folder"
        ) from exc

    def to_columns(batch: dict) -> dict:
        n = len(batch["label"])
        return {
            "text_a": batch[layout.hub_a],
            "text_b": batch[layout.hub_b] if layout.hub_b else [None] * n,
            "label": batch["label"],
        }

    return raw.map(to_columns, batched=True, remove_columns=raw.column_names, features=_features(task))
