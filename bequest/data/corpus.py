"""Raw text for task-agnostic distillation: documents cut into full-length token segments.

Input is plain text, one paragraph per line and a blank line between documents (WikiExtractor's
output and most dumps look like this). Each document's tokens are concatenated and cut into
segments of `max_length` tokens including [CLS]/[SEP], so almost no position is padding. The
result is cached by the files' content, the tokenizer's vocabulary and the length: the corpus
is tokenised once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from bequest.data.features import Batched
from bequest.errors import BequestError
from bequest.io import cached_arrays, sha256_file

MIN_SEGMENT = 8  # shorter document tails are dropped: they teach little and cost a batch slot


@dataclass
class Segments(Batched):
    """Token segments in one (N, max_length) array; the task-agnostic counterpart of `Encoded`."""

    ids: np.ndarray
    sizes: np.ndarray
    token_types: bool

    def __len__(self) -> int:
        return len(self.sizes)

    @property
    def lengths(self) -> list[int]:
        return self.sizes.tolist()

    @property
    def inputs(self) -> tuple[str, ...]:
        return ("input_ids", "attention_mask") + (("token_type_ids",) if self.token_types else ())

    def select(self, indices) -> Segments:
        return Segments(self.ids[indices], self.sizes[indices], self.token_types)

    def batch(self, indices, pad_token_id: int) -> dict[str, torch.Tensor]:
        indices = list(indices)
        longest = int(self.sizes[indices].max())
        ids = torch.from_numpy(self.ids[indices, :longest].astype(np.int64))
        mask = (torch.arange(longest)[None, :] < torch.from_numpy(self.sizes[indices])[:, None]).long()
        batch = {"input_ids": ids.masked_fill(mask == 0, pad_token_id), "attention_mask": mask,
                 "index": torch.tensor(indices, dtype=torch.long)}
        if self.token_types:
            batch["token_type_ids"] = torch.zeros_like(ids)
        return batch

    def fingerprint(self) -> str:
        return hashlib.sha256(self.ids.tobytes() + self.sizes.tobytes()).hexdigest()


def corpus_files(paths: list[str]) -> list[Path]:
    """Text files named directly, or every *.txt under a named folder, in a stable order."""
    files = []
    for name in paths:
        path = Path(name).expanduser()
        if path.is_dir():
            found = sorted(path.rglob("*.txt"))
            if not found:
                raise BequestError(f"corpus folder {path} holds no .txt files: name text files or a folder of them")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise BequestError(f"corpus file {path} not found: check corpus.files in the recipe")
    return files


def file_documents(files: list[Path]) -> list[str]:
    """Documents of text files, which separate them by blank lines."""
    documents = []
    for path in files:
        try:
            documents += path.read_text(encoding="utf-8").split("\n\n")
        except UnicodeDecodeError:
            raise BequestError(f"corpus file {path} is not UTF-8 text: convert it to UTF-8") from None
    return documents


def hub_documents(spec) -> tuple[list[str], str]:
    """Documents of a hub text dataset (one per row) and the dataset's content fingerprint."""
    import datasets

    try:
        dataset = datasets.load_dataset(spec.path, spec.name, split=spec.split)
    except Exception as error:  # no network, unknown name, missing split: all mean "cannot use this source"
        reason = (str(error).splitlines() or [""])[0][:200]
        raise BequestError(f"cannot load the dataset {spec.path} ({type(error).__name__}: {reason}): "
                           "check corpus.dataset, or give local corpus.files") from None
    if spec.column not in dataset.column_names:
        raise BequestError(f"dataset {spec.path} has no column '{spec.column}' (it has {', '.join(dataset.column_names)}): "
                           "set corpus.dataset.column")
    return list(dataset[spec.column]), dataset._fingerprint


def special_wrapper(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a single sequence ([CLS] ... [SEP], <s> ... </s>)."""
    bare = tokenizer("hello", add_special_tokens=False)["input_ids"]
    full = tokenizer("hello", add_special_tokens=True)["input_ids"]
    start = next(i for i in range(len(full)) if full[i : i + len(bare)] == bare)
    return full[:start], full[start + len(bare) :]


def _segment(documents: list[str], tokenizer, max_length: int, source: str) -> tuple[np.ndarray, np.ndarray]:
    prefix, suffix = special_wrapper(tokenizer)
    room = max_length - len(prefix) - len(suffix)
    rows, sizes = [], []
    for document in tqdm(documents, desc="tokenising corpus", unit="doc", dynamic_ncols=True):
        paragraphs = [line.strip() for line in document.split("\n") if line.strip()]
        if not paragraphs:
            continue
        tokens = [t for ids in tokenizer(paragraphs, add_special_tokens=False)["input_ids"] for t in ids]
        for start in range(0, len(tokens), room):
            piece = tokens[start : start + room]
            if len(piece) < MIN_SEGMENT:
                continue
            row = prefix + piece + suffix
            sizes.append(len(row))
            rows.append(row + [tokenizer.pad_token_id] * (max_length - len(row)))
    if not rows:
        raise BequestError(f"the corpus ({source}) yields no segment of {MIN_SEGMENT}+ tokens: give more text")
    return np.asarray(rows, dtype=np.int32), np.asarray(sizes, dtype=np.int64)


def load_segments(corpus, tokenizer, max_length: int, cache_dir: Path) -> tuple[Segments, dict[str, str]]:
    """Segments of the whole corpus (from the cache when it has them) and the source's hashes.

    `corpus` names local files (`files`) or a hub dataset (`dataset`), as CorpusConfig does."""
    if corpus.files:
        files = corpus_files(corpus.files)
        hashes = {str(f): sha256_file(f) for f in files}
        documents, source = None, ", ".join(map(str, files))
    else:
        documents, fingerprint = hub_documents(corpus.dataset)
        source = f"hub:{corpus.dataset.path}/{corpus.dataset.name or ''}/{corpus.dataset.split}"
        hashes = {source: fingerprint}
    vocabulary = hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()
    key = hashlib.sha256(json.dumps([sorted(hashes.values()), vocabulary, max_length]).encode()).hexdigest()[:20]
    path = Path(cache_dir) / "corpus" / f"{key}.safetensors"
    token_types = "token_type_ids" in tokenizer.model_input_names

    def tokenise() -> dict[str, np.ndarray]:
        ids, sizes = _segment(documents if documents is not None else file_documents(files), tokenizer, max_length, source)
        return {"ids": ids, "sizes": sizes}

    saved = cached_arrays(path, key, tokenise)
    return Segments(saved["ids"], saved["sizes"], token_types), hashes


def split_segments(segments: Segments, heldout: int, limit: int | None, seed: int) -> tuple[Segments, Segments]:
    """A seeded random split: `heldout` segments to measure the loss on, up to `limit` to train on."""
    if len(segments) <= heldout:
        raise BequestError(f"the corpus has {len(segments)} segments, not more than corpus.heldout_segments={heldout}: "
                           "give more text or a smaller heldout_segments")
    order = torch.randperm(len(segments), generator=torch.Generator().manual_seed(seed)).numpy()
    train = np.sort(order[heldout:][:limit] if limit else order[heldout:])
    return segments.select(train), segments.select(np.sort(order[:heldout]))
