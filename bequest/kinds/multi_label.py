"""Multi-label text classification: any number of labels per text (a list in the label column, or a string
cut at `data.label_separator`), each its own yes/no decision.

The head has a logit per label read through a sigmoid (the config says `multi_label_classification`,
so transformers' pipeline scores each label on its own); the task loss is binary cross-entropy, and KD
matches the teacher's per-label probabilities softened by the temperature. Scored by micro- and
macro-averaged F1 over labels and by subset accuracy (every label of a row right), at threshold 0.5.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from bequest.kinds.base import TASK_KINDS
from bequest.kinds.classification import Classification


def bernoulli_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) between the per-label Bernoulli distributions sigmoid(logit / T), averaged over
    labels and examples, times T^2 (as for the softmax KD, so the gradient scale does not depend on T)."""
    student, teacher = student / temperature, teacher.to(student.dtype) / temperature
    targets = torch.sigmoid(teacher)
    cross = F.binary_cross_entropy_with_logits(student, targets)
    entropy = F.binary_cross_entropy_with_logits(teacher, targets)  # the teacher's own: the KL is 0 when they agree
    return (cross - entropy) * temperature**2


class MultiLabel(Classification):
    """Several labels per text: a sigmoid per label, BCE, KD on per-label sigmoids; micro/macro F1."""

    has_classes = False  # no single class per example: PTP has nothing to build its prompts from
    pipeline_example = 'pipeline("text-classification", model=folder, top_k=None)("a charming and affecting journey")'

    def metrics(self, task, data, logits, qa):
        from sklearn.metrics import accuracy_score, f1_score

        predicted = (np.asarray(logits) > 0).astype(np.int64)  # sigmoid > 0.5
        gold = np.asarray(data.labels).astype(np.int64)
        return {"f1_micro": float(f1_score(gold, predicted, average="micro", zero_division=0)),
                "f1_macro": float(f1_score(gold, predicted, average="macro", zero_division=0)),
                "accuracy": float(accuracy_score(gold, predicted))}

    baseline = "majority per label"

    def baseline_scores(self, task, train, data, qa):
        frequent = np.asarray(train.labels, dtype=np.float64).mean(axis=0) > 0.5
        return self.metrics(task, data, np.tile(np.where(frequent, 1.0, -1.0), (len(data), 1)), qa)

    def decode(self, task, data, logits, labels, qa):
        rows = []
        for row in torch.sigmoid(torch.from_numpy(np.asarray(logits, dtype=np.float64))).numpy():
            rows.append({"labels": [labels[i] for i in np.flatnonzero(row > 0.5)],
                         "scores": {label: float(p) for label, p in zip(labels, row)}})
        return rows

    def describe(self, task):
        return f"multi-label student for {task.name} ({len(task.label_names)} labels)"

    def loss(self, logits, labels, mask=None):
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))

    def soft_loss(self, student, teacher, temperature, mask=None):
        return bernoulli_kl(student, teacher, temperature)


MULTI_LABEL = TASK_KINDS.register("multi_label", MultiLabel(), description=MultiLabel.__doc__)
