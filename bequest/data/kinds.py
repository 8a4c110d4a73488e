"""Task kinds: what each kind of task's model head, loss and soft-target loss are.

The kind, not a tensor's shape, says how logits are read: classification logits are
(batch, classes); a regression head gives (batch, 1) scores; extractive QA gives (batch, tokens, 2)
start and end scores, each a distribution over the sequence's real tokens, reshaped to
(2 * batch, tokens) rows with padding masked out, so the same cross-entropy and KL apply and
average the start and end losses as BERT's SQuAD loss does. A new kind is a subclass and its
`TASK_KINDS.register`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import (
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
)

from bequest.data.features import model_inputs
from bequest.models.outputs import PADDING_LOGIT, output_logits
from bequest.registry import Registry

TASK_KINDS = Registry("task kind", "task kinds")


class TaskKind:
    """The head (Auto class) of a kind's models, its task loss and its soft-target (KD) loss."""

    auto_class = AutoModelForSequenceClassification
    has_classes = True  # the head predicts classes (PTP builds its classes from them)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def soft_loss(self, student: torch.Tensor, teacher: torch.Tensor, temperature: float,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def kd_loss(self, student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, alpha: float,
                temperature: float, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(1 - alpha) * task loss + alpha * soft-target loss (Hinton et al.)."""
        return (1 - alpha) * self.loss(student, labels, mask) + alpha * self.soft_loss(student, teacher, temperature, mask)

    def batch_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The task loss of `model` on a training batch: what fine-tuning and Taylor importance minimise."""
        return self.loss(output_logits(model(**model_inputs(batch))), batch["labels"], batch["attention_mask"])


def _kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(t/T) || softmax(s/T)) * T^2 over rows, averaged: the T^2 keeps the gradient scale independent of T."""
    student_log_probs = F.log_softmax(student / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher.to(student.dtype) / temperature, dim=-1)
    return F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="batchmean") * temperature**2


class Classification(TaskKind):
    """One label per example or pair: cross-entropy, and KL between the temperature-softened class distributions."""

    def loss(self, logits, labels, mask=None):
        return F.cross_entropy(logits, labels)

    def soft_loss(self, student, teacher, temperature, mask=None):
        return _kl(student, teacher, temperature)


class Regression(TaskKind):
    """A score per example or pair (STS-B): MSE to the label, and MSE to the teacher's score as the soft target."""

    has_classes = False

    def loss(self, logits, labels, mask=None):
        return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))

    def soft_loss(self, student, teacher, temperature, mask=None):
        return F.mse_loss(student, teacher.to(student.dtype))


def _rows(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """QA logits (B, T, 2) -> (2B, T) rows [start of 0, end of 0, start of 1, ...], padding masked out."""
    if mask is not None:
        logits = logits.masked_fill(~mask[:, : logits.shape[1], None].bool(), PADDING_LOGIT)
    return logits.transpose(1, 2).reshape(-1, logits.shape[1])


class ExtractiveQA(TaskKind):
    """An answer span in the context (SQuAD): start and end distributions over the tokens."""

    auto_class = AutoModelForQuestionAnswering
    has_classes = False

    def loss(self, logits, labels, mask=None):
        return F.cross_entropy(_rows(logits, mask), labels.reshape(-1))

    def soft_loss(self, student, teacher, temperature, mask=None):
        teacher = teacher[:, : student.shape[1]]  # cached ones are padded to the longest feature
        return _kl(_rows(student, mask), _rows(teacher, mask), temperature)


CLASSIFICATION = TASK_KINDS.register("classification", Classification(), description=Classification.__doc__)
REGRESSION = TASK_KINDS.register("regression", Regression(), description=Regression.__doc__)
EXTRACTIVE_QA = TASK_KINDS.register("extractive_qa", ExtractiveQA(), description=ExtractiveQA.__doc__)
