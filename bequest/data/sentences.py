"""Sentences to train an embedding model on, and scored sentence pairs to evaluate it on.

Training sentences come from text files (a paragraph a line, as the Wikipedia sample: cut into
sentences) or from the text column(s) of any table the data keys read. A pair file (STS-B's TSV, any
CSV/JSON/Parquet or hub:<id>) names its two text columns and its gold score column in
`data.validation_columns` / `data.test_columns`; integers there are positions in a header-less
file (the original STS test file).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from bequest.errors import BequestError

TEXT_SUFFIXES = (".txt",)
# a sentence ends at . ! or ? followed by a space and an upper-case letter, a digit or an opening quote
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
MIN_WORDS = 4  # shorter pieces are headings, list items and abbreviations cut apart


def split_sentences(paragraph: str) -> list[str]:
    """A paragraph's sentences of at least MIN_WORDS words."""
    return [piece.strip() for piece in _SENTENCE_END.split(paragraph.strip()) if len(piece.split()) >= MIN_WORDS]


def read_text_sentences(path: Path, what: str) -> list[str]:
    """Every sentence of a text file, in file order, each once."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise BequestError(f"data.{what}: {path} is not UTF-8 text (byte {error.start}): save it as UTF-8") from None
    sentences = dict.fromkeys(s for line in text.splitlines() for s in split_sentences(line))
    if not sentences:
        raise BequestError(f"data.{what}: {path} holds no sentence of {MIN_WORDS} words or more")
    return list(sentences)


def training_texts(data, cache_dir: str | None) -> tuple[list[str], list[str] | None]:
    """What data.train holds to train on: its sentences (a text file cut into sentences, or a table's text
    column), each once, and None; or, with data.text_pair_column, its pairs as (first texts, second texts),
    each pair once."""
    from bequest.data.user_files import HUB, check_columns, read_table

    source = data.train
    if not source.startswith(HUB) and Path(source).suffix.lower() in TEXT_SUFFIXES:
        path = Path(source).expanduser()
        if not path.is_file():
            raise BequestError(f"data.train: {path} not found: give a text file (a paragraph a line), a table or "
                               "hub:<dataset id>")
        if data.text_pair_column:
            raise BequestError(f"data.text_pair_column: {path} is a text file, which has no columns: give pairs in a "
                               "table (csv, tsv, jsonl, parquet) or drop data.text_pair_column")
        return read_text_sentences(path, "train"), None
    table = read_table(source, data.train_split, data.hub_config, "train", cache_dir)
    columns = {"text_column": data.text_column, "text_pair_column": data.text_pair_column}
    check_columns(table, columns, f"data.train {source}")
    texts = [[_text(t) for t in table[name]] for name in columns.values() if name]
    rows = [row for row in zip(*texts) if all(row)]
    if not rows:
        named = " and ".join(repr(name) for name in columns.values() if name)
        raise BequestError(f"data.train: {source} has no row with text in column {named}")
    rows = list(dict.fromkeys(rows))
    if not data.text_pair_column:
        return [first for first, in rows], None
    return [first for first, _ in rows], [second for _, second in rows]


def _text(value) -> str:
    """A cell's text, or "" for an empty or missing one."""
    return str(value).strip() if value is not None else ""


def scored_pairs(source: str, columns: list, split: str, data, what: str,
                 cache_dir: str | None) -> tuple[list[str], list[str], list[float]]:
    """(first texts, second texts, gold scores) of a pair file, by the columns it names."""
    if all(isinstance(c, int) for c in columns):
        return _headerless_pairs(Path(source).expanduser(), columns, what)
    from bequest.data.user_files import check_columns, read_table

    table = read_table(source, split, data.hub_config, what, cache_dir)
    check_columns(table, {f"{what}_columns[{i}]": name for i, name in enumerate(columns)}, f"data.{what} {source}")
    first, second, scores = (table[c] for c in columns)
    return [str(t) for t in first], [str(t) for t in second], _scores(scores, source, what)


def _headerless_pairs(path: Path, columns: list[int], what: str) -> tuple[list[str], list[str], list[float]]:
    if not path.is_file():
        raise BequestError(f"data.{what}: {path} not found: give the path of a pair file or hub:<dataset id>")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    rows = []
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            for number, row in enumerate(csv.reader(handle, delimiter=delimiter, quoting=csv.QUOTE_NONE), 1):
                if len(row) <= max(columns):
                    raise BequestError(f"data.{what}: {path} line {number} has {len(row)} column(s), but "
                                       f"data.{what}_columns names position {max(columns)} (counted from 0)")
                rows.append([row[c] for c in columns])
    except UnicodeDecodeError as error:
        raise BequestError(f"data.{what}: {path} is not UTF-8 text (byte {error.start}): save it as UTF-8") from None
    if not rows:
        raise BequestError(f"data.{what}: {path} is empty")
    first, second, scores = zip(*rows)
    return list(first), list(second), _scores(scores, str(path), what)


def _scores(values, source: str, what: str) -> list[float]:
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        bad = next(v for v in values if not _is_number(v))
        raise BequestError(f"data.{what}: {source} has the score {bad!r}, not a number: name the gold score column "
                           f"third in data.{what}_columns") from None


def _is_number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False
