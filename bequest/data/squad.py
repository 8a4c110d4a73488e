"""SQuAD v1.1 / v2.0: questions read from the official JSON (or the hub), split, and cut into features.

A question's context is often longer than the model's window, so it becomes several features:
windows of `max_length` tokens over the context, consecutive ones overlapping by `stride`
tokens, each holding the question. Each feature keeps the character span of every context
token (its offsets) so that a predicted token span maps back to the exact text of the context.
A feature's label is the (start, end) token of the answer, or (0, 0), the [CLS] token, when the
answer is not inside its window or the question has none (v2.0).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bequest.data.features import Encoded, subsample
from bequest.data.tasks import TaskSpec
from bequest.errors import BequestError
from bequest.io import sha256_file

FILE_VERSION = {"squad": "v1.1", "squad_v2": "v2.0"}


@dataclass
class QAFeatures(Encoded):
    """Features of a split, with what turns their logits back into answers: the questions they came
    from (`examples`, in file order), each feature's question (`example_index`) and the character
    span of each context token (`offsets`; None on question and special tokens)."""

    examples: list[dict] = field(default_factory=list)
    example_index: list[int] = field(default_factory=list)
    offsets: list[list[tuple[int, int] | None]] = field(default_factory=list)


def squad_file(task: TaskSpec, split: str, data_dir: str | Path) -> Path:
    """`<split>-v1.1.json` (or v2.0) in `data_dir` or its squad/ folder; a variant such as
    dev-v1.1.rebuilt.json is accepted when it is the only match."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise BequestError(f"data dir {root} not found: point data.dir at a folder holding the SQuAD JSON files")
    version = FILE_VERSION[task.name]
    for folder in (root, root / "squad"):
        exact = folder / f"{split}-{version}.json"
        if exact.is_file():
            return exact
        variants = sorted(folder.glob(f"{split}-{version}*.json"))
        if len(variants) == 1:
            return variants[0]
        if len(variants) > 1:
            raise BequestError(f"several SQuAD {split} files in {folder} ({', '.join(v.name for v in variants)}): "
                               f"keep one, or name it {split}-{version}.json")
    hint = " or set data.split_by_article to train on part of the dev set" if split == "train" else ""
    raise BequestError(f"no SQuAD {version} {split} file ({split}-{version}.json) in {root} or {root / 'squad'}: "
                       f"download it there{hint}")


def read_squad_json(path: Path) -> list[dict]:
    """The questions of an official-format SQuAD file as rows (id, title, context, question, answers)."""
    try:
        articles = json.loads(path.read_text(encoding="utf-8"))["data"]
        rows = []
        for article in articles:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    answers = [] if qa.get("is_impossible") else qa["answers"]
                    rows.append({"id": qa["id"], "title": article["title"], "context": paragraph["context"],
                                 "question": qa["question"],
                                 "answers": {"text": [a["text"] for a in answers], "answer_start": [a["answer_start"] for a in answers]}})
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BequestError(f"SQuAD file {path} is not valid JSON ({error}): re-download it") from None
    except (KeyError, TypeError) as error:
        raise BequestError(f"SQuAD file {path} does not follow the SQuAD schema (missing {error}): "
                           "give a file in the official data/paragraphs/qas layout") from None
    if not rows:
        raise BequestError(f"SQuAD file {path} holds no questions")
    return rows


SQUAD_COLUMNS = ("context", "question", "answers")


def user_squad_rows(source: str, split: str, data, what: str, cache_dir: str | None = None) -> list[dict]:
    """The questions of one split of the user's data: a SQuAD-format JSON file, or hub:<id> with SQuAD's columns
    (context, question, answers {text, answer_start}; id and title when present)."""
    from bequest.data.user_files import HUB, read_table

    if source.startswith(HUB):
        table = read_table(source, split, data.hub_config, what, cache_dir)
        missing = [column for column in SQUAD_COLUMNS if column not in table.column_names]
        if missing:
            raise BequestError(f"data.{what} {source} has no column {missing[0]!r}; its columns are "
                               f"{', '.join(table.column_names)}: question-answering reads SQuAD's columns "
                               f"({', '.join(SQUAD_COLUMNS)})")
        return [{"id": str(row.get("id", number)), "title": row.get("title") or str(number), **{c: row[c] for c in SQUAD_COLUMNS}}
                for number, row in enumerate(table)]
    path = Path(source).expanduser()
    if path.suffix.lower() != ".json":
        raise BequestError(f"data.{what}: {path} is a {path.suffix or 'suffix-less'} file: question-answering reads "
                           "SQuAD-format .json files (data/paragraphs/qas) or hub:<dataset id>")
    if not path.is_file():
        raise BequestError(f"data.{what}: {path} not found: give the path of a SQuAD-format .json file or hub:<dataset id>")
    return read_squad_json(path)


def load_squad_split(task: TaskSpec, split: str, data_dir: str | Path | None) -> tuple[list[dict], str, str]:
    """The rows of a split, and where they came from with its hash (to record which data a run saw)."""
    if data_dir is not None:
        path = squad_file(task, split, data_dir)
        return read_squad_json(path), str(path), sha256_file(path)
    hub_split = "validation" if split == "dev" else split
    try:
        import datasets

        raw = datasets.load_dataset(task.hub_name, split=hub_split)
    except Exception as exc:  # no network, hub outage, missing cache: all mean "use local files"
        reason = (str(exc).splitlines() or [""])[0][:200]
        raise BequestError(f"the Hugging Face hub is unreachable for {task.hub_name} ({type(exc).__name__}: {reason}): "
                           "set data.dir to a folder holding the SQuAD JSON files") from exc
    return [dict(row) for row in raw], f"hub:{task.hub_name}/{hub_split}", raw._fingerprint


def split_by_article(rows: list[dict], eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, eval) rows: a seeded random `eval_fraction` of the articles (by title) for evaluation,
    so no context is seen in both parts; rows keep their file order."""
    titles = list(dict.fromkeys(row["title"] for row in rows))
    if len(titles) < 2:
        raise BequestError(f"data.split_by_article needs at least 2 articles, the file has {len(titles)}")
    count = min(len(titles) - 1, max(1, math.ceil(eval_fraction * len(titles))))
    order = torch.randperm(len(titles), generator=torch.Generator().manual_seed(seed)).tolist()
    held_out = {titles[i] for i in order[:count]}
    return [r for r in rows if r["title"] not in held_out], [r for r in rows if r["title"] in held_out]


def encode_squad(tokenizer, rows: list[dict], max_length: int, stride: int) -> QAFeatures:
    """Windowed features of `rows` with their answer labels and context offsets."""
    if not tokenizer.is_fast:
        raise BequestError("question answering needs a fast tokenizer (for character offsets): "
                           "use a model folder with a tokenizer.json")
    if stride >= max_length // 2:
        raise BequestError(f"qa.stride={stride} must be under half of data.max_length={max_length}: lower the stride")
    tokens = tokenizer([r["question"].lstrip() for r in rows], [r["context"] for r in rows], truncation="only_second",
                       max_length=max_length, stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True)
    inputs = {name: tokens[name] for name in tokenizer.model_input_names if name in tokens}
    labels, offsets = [], []
    for feature, example in enumerate(tokens["overflow_to_sample_mapping"]):
        context = [i for i, sequence in enumerate(tokens.sequence_ids(feature)) if sequence == 1]
        spans, in_context = tokens["offset_mapping"][feature], set(context)
        offsets.append([tuple(spans[i]) if i in in_context else None for i in range(len(spans))])
        labels.append(_answer_tokens(rows[example]["answers"], context, spans))
    return QAFeatures(inputs=inputs, labels=labels, examples=rows,
                      example_index=list(tokens["overflow_to_sample_mapping"]), offsets=offsets)


def _answer_tokens(answers: dict, context: list[int], spans) -> list[int]:
    """The first gold answer's (start, end) tokens in this window, else [CLS]'s (0, 0)."""
    if not answers["text"] or not context:
        return [0, 0]
    first_char = answers["answer_start"][0]
    last_char = first_char + len(answers["text"][0])
    if spans[context[0]][0] > first_char or spans[context[-1]][1] < last_char:
        return [0, 0]
    start = next(i for i in context if spans[i][1] > first_char)
    end = next(i for i in reversed(context) if spans[i][0] < last_char)
    return [start, end]


def load_squad_data(task: TaskSpec, data_dir: str | None, tokenizer, max_length: int, stride: int,
                    max_train_examples: int | None, max_eval_examples: int | None, split_by_article_fraction: float | None,
                    seed: int, with_train: bool = True) -> tuple[QAFeatures | None, QAFeatures, dict[str, str]]:
    """Train and dev features (the dev set's articles split in two when `split_by_article_fraction`
    is set) and the hashes of the files read."""
    dev_rows, where, digest = load_squad_split(task, "dev", data_dir)
    hashes = {where: digest}
    train_rows = None
    if split_by_article_fraction is not None:
        train_rows, dev_rows = split_by_article(dev_rows, split_by_article_fraction, seed)
    elif with_train:
        train_rows, where, digest = load_squad_split(task, "train", data_dir)
        hashes[where] = digest
    dev_rows = [dev_rows[i] for i in subsample(len(dev_rows), max_eval_examples, seed)]
    train = None
    if with_train:
        train_rows = [train_rows[i] for i in subsample(len(train_rows), max_train_examples, seed)]
        train = encode_squad(tokenizer, train_rows, max_length, stride)
    return train, encode_squad(tokenizer, dev_rows, max_length, stride), hashes
