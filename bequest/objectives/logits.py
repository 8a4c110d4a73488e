"""Prediction-layer objectives: the task loss and logit knowledge distillation (Hinton et al.)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for classification; MSE for regression (a single output)."""
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
    return F.cross_entropy(logits, labels)


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(t/T) || softmax(s/T)) * T^2, averaged over the batch; MSE between outputs for regression.

    The T^2 factor keeps the gradient scale independent of T.
    """
    if student_logits.shape[-1] == 1:
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
) -> torch.Tensor:
    """(1 - alpha) * task loss + alpha * soft-target loss."""
    return (1 - alpha) * task_loss(student_logits, labels) + alpha * soft_target_loss(
        student_logits, teacher_logits, temperature
    )
