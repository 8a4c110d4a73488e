"""SQuAD answers from start/end logits, and Exact Match / F1 exactly as the official evaluation scripts.

Scores are percentages, as the official v1.1 and v2.0 scripts print them. The answer of a
question is the best span over all its windows; for v2.0 it is the empty string when the
no-answer score ([CLS] as start and end, lowest over the windows) beats that span's score by
more than `null_threshold`.
"""

from __future__ import annotations

import collections
import re
import string

import numpy as np

from bequest.data.squad import QAFeatures

_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles (a, an, the), single spaces: the official normalisation."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    """Token-overlap F1 of the normalised strings; two empty answers agree (v2.0's rule)."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not expected:
        return float(predicted == expected)
    same = sum((collections.Counter(predicted) & collections.Counter(expected)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(predictions: dict[str, str], examples: list[dict], unanswerable: bool) -> dict[str, float]:
    """EM and F1 (percent), each the maximum over a question's gold answers; with `unanswerable`
    also over the questions with an answer (HasAns) and without (NoAns), where a split is not empty."""
    exact, overlap, has_answer = [], [], []
    for example in examples:
        golds = [a for a in example["answers"]["text"] if normalize_answer(a)] or [""]
        prediction = predictions[example["id"]]
        exact.append(max(exact_match(prediction, gold) for gold in golds))
        overlap.append(max(f1(prediction, gold) for gold in golds))
        has_answer.append(golds != [""])
    exact, overlap, has_answer = np.array(exact), np.array(overlap), np.array(has_answer)
    scores = {"exact_match": 100 * exact.mean(), "f1": 100 * overlap.mean()}
    if unanswerable:
        for name, part in (("HasAns", has_answer), ("NoAns", ~has_answer)):
            if part.any():
                scores.update({f"{name}_exact_match": 100 * exact[part].mean(), f"{name}_f1": 100 * overlap[part].mean()})
    return {name: float(value) for name, value in scores.items()}


def best_answers(features: QAFeatures, logits: np.ndarray, n_best: int, max_answer_length: int,
                 unanswerable: bool, null_threshold: float) -> dict[str, str]:
    """The answer text of every question, from the (features, tokens, 2) logits of its windows."""
    best = {}  # example index -> (score, text)
    null = {}  # example index -> lowest no-answer score over its windows
    for feature, example in enumerate(features.example_index):
        offsets = features.offsets[feature]
        start, end = logits[feature, : len(offsets), 0], logits[feature, : len(offsets), 1]
        null[example] = min(null.get(example, np.inf), start[0] + end[0])
        for s in np.argsort(start)[::-1][:n_best]:
            for e in np.argsort(end)[::-1][:n_best]:
                if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                    continue
                score = start[s] + end[e]
                if example not in best or score > best[example][0]:
                    best[example] = (score, features.examples[example]["context"][offsets[s][0] : offsets[e][1]])
    answers = {}
    for index, example in enumerate(features.examples):
        score, text = best.get(index, (-np.inf, ""))
        if unanswerable and null.get(index, -np.inf) - score > null_threshold:
            text = ""
        answers[example["id"]] = text
    return answers
