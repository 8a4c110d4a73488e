"""GLUE scores from raw model outputs, computed the way the GLUE leaderboard defines them."""

from __future__ import annotations

import numpy as np

from bequest.data.tasks import TaskSpec


def _classification_scorers() -> dict:
    """scikit-learn's scorers (imported on first use: a refused command never pays for scipy).
    Binary F1 scores the positive class 1 ("paraphrase", "duplicate"), as GLUE does for MRPC and QQP."""
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    return {"matthews_correlation": matthews_corrcoef, "f1": f1_score, "accuracy": accuracy_score,
            "f1_macro": lambda gold, predicted: f1_score(gold, predicted, average="macro")}


def compute_metrics(task: TaskSpec, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Score logits (classification, argmaxed here) or scores (STS-B, shape (n,) or (n, 1)) against labels.

    Returns exactly the keys in `task.metrics`, as plain floats so they serialise to JSON as-is.
    """
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    if task.is_regression:
        from scipy.stats import pearsonr, spearmanr

        scores = predictions.reshape(-1).astype(np.float64)
        gold = labels.reshape(-1).astype(np.float64)
        if len(scores) != len(gold):
            raise ValueError(f"{len(scores)} predictions for {len(gold)} labels")
        return {
            "pearson": float(pearsonr(scores, gold)[0]),
            "spearmanr": float(spearmanr(scores, gold)[0]),
        }
    if predictions.ndim != 2 or predictions.shape[1] != task.num_labels:
        raise ValueError(f"expected logits of shape (n, {task.num_labels}), got {predictions.shape}")
    predicted = predictions.argmax(axis=-1)
    gold = labels.reshape(-1).astype(np.int64)
    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} predictions for {len(gold)} labels")
    scorers = _classification_scorers()
    return {name: float(scorers[name](gold, predicted)) for name in task.metrics}
