"""GLUE metrics checked against hand computations from the confusion matrix and numpy."""

import math

import numpy as np
import pytest

from bequest.data.tasks import TASKS
from bequest.eval.metrics import compute_metrics


def one_hot_logits(predicted: list[int], num_labels: int) -> np.ndarray:
    """Logits whose argmax is `predicted`, with noise so argmax is the only thing that decides."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(len(predicted), num_labels))
    logits[np.arange(len(predicted)), predicted] += 10.0
    return logits


def confusion(gold, predicted):
    gold, predicted = np.asarray(gold), np.asarray(predicted)
    tp = int(((gold == 1) & (predicted == 1)).sum())
    tn = int(((gold == 0) & (predicted == 0)).sum())
    fp = int(((gold == 0) & (predicted == 1)).sum())
    fn = int(((gold == 1) & (predicted == 0)).sum())
    return tp, tn, fp, fn


def test_cola_matthews_small_known_value():
    gold = [1, 1, 1, 0, 0, 0]
    predicted = [1, 1, 0, 0, 0, 1]  # tp=2 tn=2 fp=1 fn=1 -> (4 - 1) / sqrt(3^4) = 1/3
    result = compute_metrics(TASKS["cola"], one_hot_logits(predicted, 2), np.array(gold))
    assert result.keys() == {"matthews_correlation"}
    assert type(result["matthews_correlation"]) is float
    assert result["matthews_correlation"] == pytest.approx(1 / 3)


def test_cola_matthews_random_against_formula():
    rng = np.random.default_rng(1)
    gold = rng.integers(0, 2, size=500)
    logits = rng.normal(size=(500, 2)) + np.eye(2)[gold] * 0.7
    predicted = logits.argmax(axis=1)
    tp, tn, fp, fn = confusion(gold, predicted)
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    result = compute_metrics(TASKS["cola"], logits, gold)
    assert result["matthews_correlation"] == pytest.approx(expected)


@pytest.mark.parametrize("name", ["mrpc", "qqp"])
def test_f1_and_accuracy_against_counts(name):
    rng = np.random.default_rng(2)
    gold = rng.integers(0, 2, size=300)
    logits = rng.normal(size=(300, 2)) + np.eye(2)[gold] * 0.5
    predicted = logits.argmax(axis=1)
    tp, tn, fp, fn = confusion(gold, predicted)
    result = compute_metrics(TASKS[name], logits, gold)
    assert result.keys() == {"f1", "accuracy"}
    assert all(type(v) is float for v in result.values())
    assert result["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert result["accuracy"] == pytest.approx((tp + tn) / 300)


def test_f1_scores_class_one():
    # Class 1 is always right, class 0 always wrong: F1 of class 1 is 2*2/(2*2+1+0) = 0.8, of class 0 it is 0.
    gold = np.array([1, 1, 0])
    result = compute_metrics(TASKS["mrpc"], one_hot_logits([1, 1, 1], 2), gold)
    assert result["f1"] == pytest.approx(0.8)
    assert result["accuracy"] == pytest.approx(2 / 3)


def test_mnli_accuracy_uses_argmax_over_three_classes():
    logits = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.5], [0.0, 1.0, 0.0]])
    gold = np.array([1, 0, 2, 2])
    result = compute_metrics(TASKS["mnli"], logits, gold)
    assert result == {"accuracy": 0.75}
    assert type(result["accuracy"]) is float


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks of distinct values, to compute Spearman as Pearson on ranks."""
    ranks = np.empty(len(x))
    ranks[np.argsort(x)] = np.arange(len(x))
    return ranks


@pytest.mark.parametrize("shape", ["flat", "column"])
def test_stsb_pearson_spearman(shape):
    rng = np.random.default_rng(3)
    gold = rng.uniform(0, 5, size=200)
    scores = gold + rng.normal(scale=1.5, size=200) + 0.3 * gold**2
    predictions = scores if shape == "flat" else scores[:, None]
    result = compute_metrics(TASKS["stsb"], predictions, gold)
    assert result.keys() == {"pearson", "spearmanr"}
    assert all(type(v) is float for v in result.values())
    assert result["pearson"] == pytest.approx(np.corrcoef(scores, gold)[0, 1])
    assert result["spearmanr"] == pytest.approx(np.corrcoef(_ranks(scores), _ranks(gold))[0, 1])
    # The transform makes the two measures differ, so swapping them would fail.
    assert abs(result["pearson"] - result["spearmanr"]) > 1e-3


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError):
        compute_metrics(TASKS["sst2"], np.zeros((4, 2)), np.zeros(3))
    with pytest.raises(ValueError):
        compute_metrics(TASKS["stsb"], np.zeros((4, 1)), np.zeros(3))


def test_logits_of_wrong_width_raise():
    with pytest.raises(ValueError):
        compute_metrics(TASKS["mnli"], np.zeros((4, 2)), np.zeros(4))
