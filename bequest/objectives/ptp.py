"""Pea-KD's pretraining with teacher predictions (PTP, Cho & Kang 2022): a first stage that
teaches the student whether the teacher is right and how confident it is."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from bequest.errors import BequestError
from bequest.objectives.base import ObjectiveConfig, Term, objective


class PTPObjective(ObjectiveConfig):
    """Pea-KD's PTP: a 4-way head learns from the teacher's predictions whether the teacher is right
    and confident (0: right, confidence > t1; 1: right, <= t1; 2: wrong, > t2; 3: wrong, <= t2)."""

    t1: float | None = Field(None, gt=0, lt=1, description="default: the paper's for rte, mrpc, sst2, qnli, cola; "
                             "else the median confidence of the teacher's right predictions")
    t2: float | None = Field(None, gt=0, lt=1, description="default: the paper's, else the median confidence of its wrong ones")


PTP_THRESHOLDS = {"rte": (0.8, 0.6), "mrpc": (0.95, 0.75), "sst2": (0.98, 0.8), "qnli": (0.98, 0.7), "cola": (0.95, 0.7)}


def ptp_labels(teacher_logits: torch.Tensor, labels: torch.Tensor, t1: float, t2: float) -> torch.Tensor:
    """Pea-KD's four classes: 0 right and confidence > t1, 1 right and <= t1, 2 wrong and > t2, 3 wrong and <= t2."""
    confidence, predicted = F.softmax(teacher_logits.float(), dim=-1).max(-1)
    right = predicted == labels
    return torch.where(right, (confidence <= t1).long(), 2 + (confidence <= t2).long())


def ptp_thresholds(teacher_logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Our rule for tasks the paper gives no thresholds for: the median confidence of the teacher's
    right predictions (t1) and of its wrong ones (t2), so each pair of classes splits in half."""
    confidence, predicted = F.softmax(teacher_logits.float(), dim=-1).max(-1)
    right = predicted == labels
    t1 = confidence[right].median().item() if right.any() else 0.5
    t2 = confidence[~right].median().item() if (~right).any() else t1
    return t1, t2


@objective("ptp", "Pea-KD's PTP: 4 classes from the teacher's predictions (a first stage)")
class PTP(Term):
    """PTP: a 4-way head of its own on the student's last [CLS] state learns the teacher's
    ptp_labels; a first stage, whose head is dropped when the stage ends."""

    Config = PTPObjective
    hidden = True
    needs_labels = reads_teacher_logits = True

    def __init__(self, width: int, thresholds: tuple[float, float] | None):
        super().__init__()
        self.head = nn.Linear(width, 4)
        self.thresholds = thresholds  # None until fitted on the training set's teacher logits

    @classmethod
    def build(cls, spec, ctx, where):
        if ctx.student.num_labels == 1 or not ctx.kind.has_classes:
            raise BequestError(f"{where} builds its classes from the teacher's class predictions; a regression "
                               "or question-answering task has none: use kd or pkd")
        defaults = PTP_THRESHOLDS.get(ctx.task, (None, None))
        t1, t2 = spec.t1 or defaults[0], spec.t2 or defaults[1]
        return cls(ctx.student.hidden_size, (t1, t2) if t1 and t2 else None)

    def prepare(self, teacher_logits, data):
        if self.thresholds is not None:
            return None
        self.thresholds = ptp_thresholds(teacher_logits, torch.tensor(data.labels))
        return f"PTP thresholds from the teacher's confidence (t1, t2) = {self.thresholds}"

    def forward(self, student, teacher, labels):
        return F.cross_entropy(self.head(student.hidden[-1][:, 0]), ptp_labels(teacher.logits, labels, *self.thresholds))
