"""Intermediate-layer losses as pure functions of tensors, each normalised over real tokens only.

Conventions (the same as TextBrewer's masked losses, against which they are tested):
- hidden MSE: squared error summed over real tokens and features / (real tokens * width);
- attention MSE: squared error of pre-softmax scores over (real query, real key) pairs /
  (heads * sum over the batch of real length^2);
- attention / relation KL: KL(teacher row || student row) summed over real query rows /
  (heads * real tokens); padded keys have zero probability on both sides;
- PKD: || cls_s/|cls_s| - cls_t/|cls_t| ||^2, averaged over the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bequest.models.capture import split_heads


def hidden_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, D) states; `mask` (B, T) is 1 on real tokens."""
    weights = mask.unsqueeze(-1).to(student.dtype)
    return ((student - teacher) ** 2 * weights).sum() / (weights.sum() * student.shape[-1])


def hidden_cosine(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - cosine similarity per real token, averaged (DistilBERT's hidden-state loss)."""
    weights = mask.to(student.dtype)
    return ((1 - F.cosine_similarity(student, teacher, dim=-1)) * weights).sum() / weights.sum()


def attention_mse(student_scores: torch.Tensor, teacher_scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, H, T, T) pre-softmax scores; only pairs of real tokens count."""
    real = mask.bool()
    pairs = (real[:, None, :, None] & real[:, None, None, :]).expand_as(student_scores)
    diff = torch.where(pairs, student_scores - teacher_scores, torch.zeros_like(student_scores))
    return (diff**2).sum() / pairs.sum()


def distribution_kl(student_log_probs: torch.Tensor, teacher_log_probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) of (B, H, T, T) row distributions, averaged over heads and real query rows."""
    real = mask.bool()
    keys = real[:, None, None, :]
    teacher_probs = teacher_log_probs.exp()
    terms = torch.where(keys, teacher_probs * (teacher_log_probs - student_log_probs), torch.zeros_like(student_log_probs))
    rows = terms.sum(-1) * real[:, None, :]
    return rows.sum() / (real.sum() * student_log_probs.shape[1])


def relation_log_probs(x: torch.Tensor, heads: int, mask: torch.Tensor) -> torch.Tensor:
    """MiniLM self-relation: log softmax(X_h X_h^T / sqrt(d_h)) over real keys, for X split into `heads`."""
    split = split_heads(x, heads)
    scores = split @ split.transpose(-1, -2) / split.shape[-1] ** 0.5
    padding = (1.0 - mask[:, None, None, :].to(scores.dtype)) * torch.finfo(scores.dtype).min
    return F.log_softmax(scores + padding, dim=-1)


def pkd(student_cls: torch.Tensor, teacher_cls: torch.Tensor) -> torch.Tensor:
    """(B, D) [CLS] states; normalised, so only their direction is matched."""
    return (F.normalize(student_cls, dim=-1) - F.normalize(teacher_cls, dim=-1)).pow(2).sum(-1).mean()
