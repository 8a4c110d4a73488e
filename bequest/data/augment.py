"""Augmentation: copies of the labelled texts with words changed, a transfer set the students learn from
the teacher's outputs only (data.augment).

TinyBERT's recipe (Jiao et al., 2020, section 3.1): each copy replaces each single-piece word with
probability p by one of its K best candidates: a masked LM's top predictions at the word's place, or
here, where TinyBERT used GloVe, the word's nearest neighbours in the teacher's input embeddings. Word
dropout is a cheap comparison. The edits are made on token ids, so pairs keep their segments and the
texts are never tokenised again; every draw comes from one generator seeded by the run's seed.
A new method is a function registered in AUGMENTERS.
"""

from __future__ import annotations

import torch

from bequest.data.features import Encoded
from bequest.errors import BequestError
from bequest.registry import Registry

AUGMENTERS = Registry("augmentation method", "augmentation methods")
CHUNK = 1024  # vocabulary rows compared at a time (neighbours) / masked copies per MLM forward


def word_pieces(tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """Per vocabulary id: (is a word start, is a whole word a candidate may be). WordPiece marks a word's
    later pieces with '##'; SentencePiece and byte-level BPE mark its first piece with '▁' or 'Ġ'."""
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(tokenizer.all_special_ids)
    marks_start = any(str(token).startswith(("▁", "Ġ")) for token in tokens[:5000])
    start = torch.tensor([(str(t).startswith(("▁", "Ġ")) if marks_start else not str(t).startswith("##"))
                          and i not in special for i, t in enumerate(tokens)])
    word = start & torch.tensor([str(t).lstrip("▁Ġ").isalpha() for t in tokens])
    return start, word


def single_piece_words(ids: list[int], start: torch.Tensor) -> list[int]:
    """Positions of the words that are one piece: a word start followed by another word start or a special token."""
    starts = [bool(start[i]) for i in ids] + [True]
    return [p for p in range(len(ids)) if starts[p] and starts[p + 1]]


def _replaced(rows: dict, candidates, probability: float, copies: int, generator: torch.Generator) -> dict:
    """`copies` edits of every row: each position in `candidates[row]` (a {position: candidate ids} map) takes,
    with `probability`, one of its candidates drawn uniformly."""
    out = {name: [] for name in rows}
    for _ in range(copies):
        for row, options in enumerate(candidates):
            ids = list(rows["input_ids"][row])
            for position, choices in options.items():
                if choices.numel() and torch.rand((), generator=generator) < probability:
                    ids[position] = int(choices[torch.randint(len(choices), (), generator=generator)])
            out["input_ids"].append(ids)
            for name in rows:
                if name != "input_ids":
                    out[name].append(list(rows[name][row]))
    return out


@AUGMENTERS.register("neighbours", description="single-piece words to their nearest neighbours in the teacher's input embeddings")
def neighbours(rows: dict, spec, tokenizer, teacher, source: str, generator: torch.Generator) -> dict:
    start, word = word_pieces(tokenizer)
    embeddings = teacher.get_input_embeddings().weight.detach().float()[: len(word)]
    unit = torch.nn.functional.normalize(embeddings, dim=-1)
    positions = [single_piece_words(ids, start) for ids in rows["input_ids"]]
    seen = sorted({rows["input_ids"][r][p] for r, found in enumerate(positions) for p in found})
    nearest = {}
    for first in range(0, len(seen), CHUNK):
        chunk = torch.tensor(seen[first: first + CHUNK])
        similarity = unit[chunk] @ unit.T
        similarity[:, ~word] = -2.0  # never a special token, a later piece or punctuation
        similarity[torch.arange(len(chunk)), chunk] = -2.0  # never the word itself
        top = similarity.topk(spec.candidates, dim=-1)
        for token, ids, scores in zip(chunk.tolist(), top.indices, top.values):
            nearest[token] = ids[scores > -2.0]
    candidates = [{p: nearest[rows["input_ids"][r][p]] for p in found} for r, found in enumerate(positions)]
    return _replaced(rows, candidates, spec.probability, spec.copies, generator)


@AUGMENTERS.register("mlm", description="single-piece words to a masked LM's top predictions at their place (TinyBERT)")
def masked_lm(rows: dict, spec, tokenizer, teacher, source: str, generator: torch.Generator) -> dict:
    model = masked_lm_model(spec.model or source, tokenizer)
    start, word = word_pieces(tokenizer)
    positions = [single_piece_words(ids, start) for ids in rows["input_ids"]]
    places = [(r, p) for r, found in enumerate(positions) for p in found]
    candidates = [{} for _ in positions]
    with torch.no_grad():
        for first in range(0, len(places), CHUNK):
            chunk = places[first: first + CHUNK]
            longest = max(len(rows["input_ids"][r]) for r, _ in chunk)
            ids = torch.full((len(chunk), longest), tokenizer.pad_token_id)
            mask = torch.zeros((len(chunk), longest), dtype=torch.long)
            for i, (r, p) in enumerate(chunk):
                row = rows["input_ids"][r]
                ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
                ids[i, p] = tokenizer.mask_token_id
            types = {"token_type_ids": torch.tensor([rows["token_type_ids"][r] + [0] * (longest - len(rows["token_type_ids"][r]))
                                                     for r, _ in chunk])} if "token_type_ids" in rows else {}
            logits = model(input_ids=ids, attention_mask=mask, **types).logits
            at = logits[torch.arange(len(chunk)), torch.tensor([p for _, p in chunk])][:, : len(word)]
            at[:, ~word] = float("-inf")
            at[torch.arange(len(chunk)), torch.tensor([rows["input_ids"][r][p] for r, p in chunk])] = float("-inf")
            for (r, p), top in zip(chunk, at.topk(spec.candidates, dim=-1).indices):
                candidates[r][p] = top
    return _replaced(rows, candidates, spec.probability, spec.copies, generator)


def masked_lm_model(name: str, tokenizer):
    """`name`'s masked LM, refused in one line without trained MLM weights or with another vocabulary than the teacher's."""
    from transformers import AutoModelForMaskedLM

    from bequest.models.loading import load_pretrained, load_tokenizer

    model, info = load_pretrained(AutoModelForMaskedLM, name)
    untrained = [key for key in sorted(info["missing_keys"]) + [k for k, _, _ in info["mismatched_keys"]]
                 if not key.endswith("decoder.weight")]  # the decoder is tied to the embeddings
    if untrained:
        raise BequestError(f"data.augment: {name} has no trained masked-LM head ({untrained[0]} is missing): name a "
                           "masked LM with the teacher's vocabulary in data.augment.model, or use method neighbours")
    if load_tokenizer(name, model.config).get_vocab() != tokenizer.get_vocab():
        raise BequestError(f"data.augment.model {name} has another vocabulary than the teacher's tokenizer: name a masked "
                           "LM that shares it, or use method neighbours")
    return model.eval()


@AUGMENTERS.register("dropout", description="whole words dropped (every piece of one), at least one word kept")
def word_dropout(rows: dict, spec, tokenizer, teacher, source: str, generator: torch.Generator) -> dict:
    start, _ = word_pieces(tokenizer)
    special = set(tokenizer.all_special_ids)
    out = {name: [] for name in rows}
    for _ in range(spec.copies):
        for row, ids in enumerate(rows["input_ids"]):
            word, dropped, keep = -1, set(), []
            for position, token in enumerate(ids):
                if token in special:
                    keep.append(position)
                    continue
                if bool(start[token]):
                    word += 1
                    if torch.rand((), generator=generator) < spec.probability:
                        dropped.add(word)
                if word not in dropped:
                    keep.append(position)
            if len(keep) == sum(token in special for token in ids):  # every word dropped: keep the row as it is
                keep = list(range(len(ids)))
            for name in rows:
                out[name].append([rows[name][row][p] for p in keep])
    return out


def augmented(labelled: Encoded, spec, tokenizer, teacher, source: str, seed: int) -> Encoded:
    """`spec.copies` edited copies of every labelled row (their labels placeholders no loss reads); `teacher` is
    the pretrained teacher, `source` where it was loaded from."""
    rows = labelled.rows(range(len(labelled)))
    placeholder = rows.pop("labels")[0]
    generator = torch.Generator().manual_seed(seed)
    edited = AUGMENTERS[spec.method].implementation(rows, spec, tokenizer, teacher, source, generator)
    return Encoded(inputs=edited, labels=[placeholder] * len(edited["input_ids"]))
