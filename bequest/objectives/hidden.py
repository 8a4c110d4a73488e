"""Hidden-state objectives (TinyBERT): student states matched to mapped teacher states."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from bequest.objectives import losses
from bequest.objectives.base import LayerObjectiveConfig, Term, objective


class HiddenObjective(LayerObjectiveConfig):
    """Hidden states (embeddings = 0), through a learned projection when widths differ."""

    loss: Literal["mse", "cosine"] = Field("mse", description="mean squared error, or 1 - cosine similarity, over real tokens")
    projection: Literal["shared", "per_layer"] = Field("shared", description="one projection for all layers (TinyBERT) or one each")


class Projected(Term):
    """Maps student states to the teacher's width with learned linear maps when the widths differ."""

    hidden = teacher_pass = True

    def __init__(self, pairs, student_width: int, teacher_width: int, projection: str):
        super().__init__()
        self.pairs = pairs
        count = 0 if student_width == teacher_width else (1 if projection == "shared" else len(pairs))
        self.projections = nn.ModuleList(nn.Linear(student_width, teacher_width) for _ in range(count))

    def teacher_reads(self):
        return {("hidden", t) for _, t in self.pairs}

    def project(self, position: int, states: torch.Tensor) -> torch.Tensor:
        if not self.projections:
            return states
        return self.projections[position if len(self.projections) > 1 else 0](states)


@objective("hidden", "hidden states (TinyBERT), through a projection when widths differ")
class Hidden(Projected):
    Config = HiddenObjective

    def __init__(self, pairs, student_width, teacher_width, projection, loss):
        super().__init__(pairs, student_width, teacher_width, projection)
        self.loss = losses.hidden_cosine if loss == "cosine" else losses.hidden_mse

    @classmethod
    def build(cls, spec, ctx, where):
        return cls(ctx.pairs(spec, "uniform", "hidden", where), ctx.student.hidden_size, ctx.teacher.hidden_size,
                   spec.projection, spec.loss)

    def forward(self, student, teacher, labels):
        return sum(self.loss(self.project(n, student.hidden[s]), teacher.hidden[t], student.mask)
                   for n, (s, t) in enumerate(self.pairs))
