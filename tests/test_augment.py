"""data.augment: edited copies of the labelled texts, checked against independent computations."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bequest.data.augment import augmented
from bequest.data.features import encode
from bequest.errors import BequestError

TEXTS = ["a charming and affecting journey", "the film is dull and far too long",
         "an unflinchingly bleak and desperate comedy", "it 's a tremendously entertaining ride"]


@pytest.fixture(scope="module")
def models(tiny_teacher, tmp_path_factory):
    from transformers import AutoConfig, AutoModel, AutoTokenizer, BertForMaskedLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher)
    teacher = AutoModel.from_pretrained(tiny_teacher)
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("tiny-mlm")
    BertForMaskedLM(AutoConfig.from_pretrained(tiny_teacher)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return tokenizer, teacher, folder


def _spec(method, **more):
    return SimpleNamespace(**{"method": method, "copies": 3, "probability": 0.5, "candidates": 5, "model": None, **more})


def _candidates(tokenizer) -> np.ndarray:
    """Vocabulary ids a replacement may be: alphabetic whole-word pieces, not special."""
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(tokenizer.all_special_ids)
    return np.array([t.isalpha() and i not in special for i, t in enumerate(vocab)])


def _single_piece(tokenizer, ids) -> set[int]:
    vocab = tokenizer.convert_ids_to_tokens(ids)
    special = set(tokenizer.all_special_ids)
    return {p for p, token in enumerate(vocab) if ids[p] not in special and not token.startswith("##")
            and not (p + 1 < len(vocab) and vocab[p + 1].startswith("##"))}


def _copies(encoded, out):
    """(original row, its copy) pairs: copy c of row r is at c * rows + r."""
    rows = len(encoded)
    return [(encoded.inputs["input_ids"][i % rows], out.inputs["input_ids"][i], i % rows)
            for i in range(len(out.inputs["input_ids"]))]


def test_neighbours_replace_single_piece_words_by_their_nearest_embeddings(models):
    tokenizer, teacher, _ = models
    encoded = encode(tokenizer, TEXTS, TEXTS[::-1], [1, 0, 0, 1], 64)
    out = augmented(encoded, _spec("neighbours"), tokenizer, teacher, "unused", seed=3)
    assert len(out) == 3 * len(encoded)
    weights = teacher.get_input_embeddings().weight.detach().double().numpy()
    unit = weights / np.maximum(np.linalg.norm(weights, axis=1, keepdims=True), 1e-12)
    allowed = _candidates(tokenizer)
    changed = 0
    for original, copy, _ in _copies(encoded, out):
        assert len(copy) == len(original)
        for position, (before, after) in enumerate(zip(original, copy)):
            if before == after:
                continue
            changed += 1
            assert position in _single_piece(tokenizer, original)
            similarity = np.where(allowed, unit @ unit[before], -np.inf)
            similarity[before] = -np.inf
            assert after in np.argsort(-similarity)[:5]
    positions = sum(len(_single_piece(tokenizer, ids)) for ids in encoded.inputs["input_ids"]) * 3
    assert 0.3 * positions < changed < 0.7 * positions  # probability 0.5
    for i, types in enumerate(out.inputs["token_type_ids"]):
        assert types == encoded.inputs["token_type_ids"][i % len(encoded)]  # pairs keep their segments
    again = augmented(encoded, _spec("neighbours"), tokenizer, teacher, "unused", seed=3)
    other = augmented(encoded, _spec("neighbours"), tokenizer, teacher, "unused", seed=4)
    assert again.inputs == out.inputs and other.inputs != out.inputs


def test_masked_lm_candidates_are_its_top_predictions_at_the_masked_place(models):
    from transformers import AutoModelForMaskedLM

    tokenizer, teacher, folder = models
    encoded = encode(tokenizer, TEXTS, None, [1, 0, 0, 1], 64)
    out = augmented(encoded, _spec("mlm", model=str(folder)), tokenizer, teacher, "unused", seed=3)
    mlm = AutoModelForMaskedLM.from_pretrained(folder).eval()
    allowed = torch.from_numpy(_candidates(tokenizer))
    checked = 0
    for original, copy, _ in _copies(encoded, out):
        for position, (before, after) in enumerate(zip(original, copy)):
            if before == after:
                continue
            masked = list(original)
            masked[position] = tokenizer.mask_token_id
            with torch.no_grad():
                logits = mlm(input_ids=torch.tensor([masked])).logits[0, position, : len(allowed)]
            logits[~allowed] = float("-inf")
            logits[before] = float("-inf")
            assert after in logits.topk(5).indices.tolist()
            checked += 1
    assert checked > 10


def test_word_dropout_removes_whole_words_and_keeps_special_tokens(models):
    tokenizer, teacher, _ = models
    encoded = encode(tokenizer, TEXTS, None, [1, 0, 0, 1], 64)
    out = augmented(encoded, _spec("dropout"), tokenizer, teacher, "unused", seed=5)
    shorter = 0
    for original, copy, _ in _copies(encoded, out):
        words = tokenizer.decode(original, skip_special_tokens=True).split()
        kept = tokenizer.decode(copy, skip_special_tokens=True).split()
        iterator = iter(words)
        assert all(word in iterator for word in kept)  # a subsequence of whole words
        assert copy[0] == tokenizer.cls_token_id and copy[-1] == tokenizer.sep_token_id and kept
        shorter += len(kept) < len(words)
    assert shorter > len(out) // 2


def test_mlm_is_refused_for_a_checkpoint_without_its_head(models, tiny_teacher):
    tokenizer, teacher, _ = models
    encoded = encode(tokenizer, TEXTS, None, [1, 0, 0, 1], 64)
    with pytest.raises(BequestError, match="has no trained masked-LM head .* data.augment.model"):
        augmented(encoded, _spec("mlm"), tokenizer, teacher, str(tiny_teacher), seed=3)
