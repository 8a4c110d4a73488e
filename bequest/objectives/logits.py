"""Prediction-layer objectives: the task loss and logit knowledge distillation (Hinton et al.).

Classification logits are (batch, classes). Extractive QA logits are (batch, tokens, 2): a start
and an end score per token, each a distribution over the sequence's real tokens; they are
reshaped to (2 * batch, tokens) rows with padding masked out, so the same cross-entropy and KL
apply and average the start and end losses as BERT's SQuAD loss does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bequest.data.features import model_inputs
from bequest.models.outputs import PADDING_LOGIT, output_logits


def _rows(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """QA logits (B, T, 2) -> (2B, T) rows [start of 0, end of 0, start of 1, ...], padding masked out."""
    if mask is not None:
        logits = logits.masked_fill(~mask[:, : logits.shape[1], None].bool(), PADDING_LOGIT)
    return logits.transpose(1, 2).reshape(-1, logits.shape[1])


def task_loss(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy for classification (and for QA start/end positions, labels (B, 2)); MSE for regression."""
    if logits.ndim == 3:
        return F.cross_entropy(_rows(logits, mask), labels.reshape(-1))
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
    return F.cross_entropy(logits, labels)


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
    """KL(softmax(t/T) || softmax(s/T)) * T^2, averaged over the batch; MSE between outputs for regression.

    The T^2 factor keeps the gradient scale independent of T. QA logits compare the start and
    end distributions over the tokens; `mask` (B, T) marks the real ones.
    """
    if student_logits.ndim == 3:
        teacher_logits = teacher_logits[:, : student_logits.shape[1]]  # cached ones are padded to the longest feature
        student_logits, teacher_logits = _rows(student_logits, mask), _rows(teacher_logits, mask)
    elif student_logits.shape[-1] == 1:
        return F.mse_loss(student_logits, teacher_logits.to(student_logits.dtype))
    student_log_probs = F.log_softmax(student_logits / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits.to(student_logits.dtype) / temperature, dim=-1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="batchmean")
    return kl * temperature**2


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    temperature: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """(1 - alpha) * task loss + alpha * soft-target loss."""
    return (1 - alpha) * task_loss(student_logits, labels, mask) + alpha * soft_target_loss(
        student_logits, teacher_logits, temperature, mask
    )


def batch_task_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The task loss of `model` on a training batch: what fine-tuning and Taylor importance minimise."""
    return task_loss(output_logits(model(**model_inputs(batch))), batch["labels"], batch["attention_mask"])
