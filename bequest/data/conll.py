"""CoNLL-style token-tagged text: a token per line, its tag in the last column (whitespace- or
tab-separated), a blank line between sentences, `-DOCSTART-` lines skipped; or a hub dataset with a
column of token lists and one of tag lists (a ClassLabel sequence's names are used when present)."""

from __future__ import annotations

from pathlib import Path

from bequest.errors import BequestError

CONLL_SUFFIXES = (".txt", ".conll", ".bio", ".iob")


def read_conll(path: Path, what: str) -> tuple[list[list[str]], list[list[str]]]:
    """(sentences, tags) of a CoNLL file; a line with another column count than the file's first is an error."""
    sentences, tags, words, labels, columns = [], [], [], [], None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise BequestError(f"data.{what}: {path} is not UTF-8 text (byte {error.start}): save it as UTF-8") from None
    for number, line in enumerate([*lines, ""], 1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if words:
                sentences.append(words)
                tags.append(labels)
            words, labels = [], []
            continue
        columns = columns or len(fields)
        if len(fields) != columns or columns < 2:
            raise BequestError(f"data.{what}: {path} line {number} has {len(fields)} column(s), the file's first has "
                               f"{columns}: a token, then its tag last, in every line (fix or remove that line)")
        words.append(fields[0])
        labels.append(fields[-1])
    if not sentences:
        raise BequestError(f"data.{what}: {path} holds no tagged sentences")
    return sentences, tags


def tagged_split(source: str, split: str, data, what: str, cache_dir: str | None = None) -> tuple[list[list[str]], list[list[str]]]:
    """(sentences, tags) of one split: a CoNLL file, or hub:<id> (data.text_column: tokens, data.label_column: tags)."""
    from bequest.data.user_files import HUB, check_columns, read_table

    if not source.startswith(HUB):
        path = Path(source).expanduser()
        if path.suffix.lower() not in CONLL_SUFFIXES:
            raise BequestError(f"data.{what}: {path} is a {path.suffix or 'suffix-less'} file: token-classification reads "
                               f"CoNLL files ({', '.join(CONLL_SUFFIXES)}) or hub:<dataset id>")
        if not path.is_file():
            raise BequestError(f"data.{what}: {path} not found: give the path of a CoNLL file or hub:<dataset id>")
        return read_conll(path, what)
    table = read_table(source, split, data.hub_config, what, cache_dir)
    check_columns(table, {"text_column": data.text_column, "label_column": data.label_column}, f"data.{what} {source}")
    feature = table.features[data.label_column]
    names = getattr(getattr(feature, "feature", None), "names", None)  # a Sequence(ClassLabel) names its tags
    tags = [[names[t] if names else str(t) for t in row] for row in table[data.label_column]]
    return [list(map(str, row)) for row in table[data.text_column]], tags
