"""Attention objectives: maps (TinyBERT), and self-relations of Q, K, V (MiniLM, MiniLMv2)."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from pydantic import Field

from bequest.errors import BequestError
from bequest.objectives import losses
from bequest.objectives.base import LayerObjectiveConfig, Term, objective


class AttentionObjective(LayerObjectiveConfig):
    """Attention maps: MSE on pre-softmax scores (TinyBERT) or KL between distributions."""


class ValueRelationObjective(LayerObjectiveConfig):
    """MiniLM: KL between value self-relations softmax(V V^T / sqrt(d)); needs equal head counts."""


class MiniLMv2Objective(LayerObjectiveConfig):
    """MiniLMv2: KL between Q-Q, K-K, V-V self-relations split into relation heads."""

    relations: list[Literal["qq", "kk", "vv"]] = Field(default_factory=lambda: ["qq", "kk", "vv"], min_length=1, description="which self-relations to match")
    relation_heads: int | None = Field(None, ge=1, description="default: the teacher's attention head count")


class LayerTerm(Term):
    attention = teacher_pass = True
    slots = ("queries", "keys")  # what attention scores are built from

    def __init__(self, pairs):
        super().__init__()
        self.pairs = pairs

    @classmethod
    def build(cls, spec, ctx, where):
        ctx.same_heads(where)
        return cls(ctx.pairs(spec, "uniform", "layer", where))

    def teacher_reads(self):
        return {(slot, t) for _, t in self.pairs for slot in self.slots}


@objective("attention_mse", "pre-softmax attention scores, MSE (TinyBERT)")
class AttentionMSE(LayerTerm):
    Config = AttentionObjective

    def forward(self, student, teacher, labels):
        return sum(losses.attention_mse(student.scores(s), teacher.scores(t), student.mask) for s, t in self.pairs)


@objective("attention_kl", "attention distributions, KL per query row")
class AttentionKL(LayerTerm):
    Config = AttentionObjective

    def forward(self, student, teacher, labels):
        return sum(losses.distribution_kl(F.log_softmax(student.scores(s), -1), F.log_softmax(teacher.scores(t), -1), student.mask)
                   for s, t in self.pairs)


RELATION_SLOTS = {"qq": "queries", "kk": "keys", "vv": "values"}


class Relations(LayerTerm):
    """Self-relations of Q, K and/or V split into `heads` relation heads."""

    def __init__(self, pairs, relations, student_heads: int, teacher_heads: int):
        super().__init__(pairs)
        self.relations, self.student_heads, self.teacher_heads = relations, student_heads, teacher_heads
        self.slots = tuple(RELATION_SLOTS[relation] for relation in relations)

    def forward(self, student, teacher, labels):
        total = 0.0
        for s, t in self.pairs:
            for relation in self.relations:
                slot = RELATION_SLOTS[relation]
                log_s = losses.relation_log_probs(getattr(student, slot)[s], self.student_heads, student.mask)
                log_t = losses.relation_log_probs(getattr(teacher, slot)[t], self.teacher_heads, teacher.mask)
                total = total + losses.distribution_kl(log_s, log_t, student.mask)
        return total


@objective("value_relation", "MiniLM value relation, KL")
class ValueRelation(Relations):
    Config = ValueRelationObjective

    @classmethod
    def build(cls, spec, ctx, where):
        ctx.same_heads(where)
        return cls(ctx.pairs(spec, "last", "layer", where), ["vv"], ctx.student.num_attention_heads,
                   ctx.teacher.num_attention_heads)


@objective("minilmv2", "MiniLMv2 Q-Q, K-K, V-V relations, KL")
class MiniLMv2(Relations):
    Config = MiniLMv2Objective

    @classmethod
    def build(cls, spec, ctx, where):
        heads = spec.relation_heads or ctx.teacher.num_attention_heads
        for who, width in (("student", ctx.student.hidden_size), ("teacher", ctx.teacher.hidden_size)):
            if width % heads:
                raise BequestError(f"{where}: {heads} relation heads do not divide the {who}'s width {width}: "
                                   "choose minilmv2.relation_heads that divides both widths")
        return cls(ctx.pairs(spec, "last", "layer", where), spec.relations, heads, heads)
