"""Objectives on sentence embeddings (task: sentence-embedding): the student's embedding against the
teacher's, by mean squared error (what sentence-transformers' distillation example trains with) or
cosine distance, and the in-batch similarity structure (each sentence's softmax over its similarities
to the batch's other sentences, the teacher's as soft targets); with pairs to train on
(data.text_pair_column), each first text's softmax over the batch's second texts and back (the in-batch
negatives of sentence-transformers' MultipleNegativesRankingLoss, with the teacher's similarities as
soft targets instead of the one-hot partner).

A student narrower than the teacher embeds in fewer dimensions: a learned projection to the teacher's
width stands between them. With `embedding.match_teacher_dim` (the default) it becomes the student's
own Dense module, exported with it, so its vectors live in the teacher's space; otherwise the term
keeps it and the export gives the student's own narrower vectors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from bequest.errors import BequestError
from bequest.models.sentence import SETTINGS, embedding_dimension
from bequest.objectives.base import ObjectiveConfig, Term, objective


class EmbeddingObjective(ObjectiveConfig):
    """The student's sentence embedding against the teacher's."""


class SimilarityObjective(ObjectiveConfig):
    """In-batch similarity distillation: KL(teacher || student) between each sentence's softmax over its cosine
    similarities to the batch's other sentences, both divided by the temperature."""

    temperature: float = Field(0.05, gt=0, description="divides the cosine similarities before the softmax")

    def summary(self) -> str:
        return f"(T={self.temperature:g})"


class PairObjective(SimilarityObjective):
    """In-batch pair distillation: KL(teacher || student) between each first text's softmax over its cosine
    similarities to the batch's second texts (and each second text's over the first texts), divided by the
    temperature. Needs pairs: data.text_pair_column."""


class EmbeddingTerm(Term):
    """A term on the two models' embeddings, with the projection a narrower student needs."""

    reads_teacher_logits = True  # the teacher's embeddings: computed once on the training data and cached
    needs_embeddings = True

    def __init__(self, student_dim: int, teacher_dim: int):
        super().__init__()
        self.projection = nn.Linear(student_dim, teacher_dim) if student_dim != teacher_dim else None
        self.installed = False  # the projection is the student's own Dense module (its output is projected already)

    @classmethod
    def build(cls, spec, ctx, where):
        if not ctx.kind.embeds:
            raise BequestError(f"{where} compares sentence embeddings: it is for task: sentence-embedding (here use kd "
                               "or an intermediate objective)")
        term = cls(embedding_dimension(ctx.student), embedding_dimension(ctx.teacher))
        term.spec = spec
        return term

    def attach(self, student: nn.Module) -> None:
        if self.projection is not None and (getattr(student.config, SETTINGS, None) or {}).get("match_teacher_dim", True):
            student.set_dense(self.projection)
            self.installed = True

    def embeddings(self, student, teacher) -> tuple[torch.Tensor, torch.Tensor]:
        mine = student.logits
        if self.projection is not None and not self.installed:
            mine = self.projection(mine)
        return mine, teacher.logits.to(mine.dtype)


@objective("embedding_mse", "sentence embeddings: mean squared error to the teacher's (sentence-transformers' distillation)",
           EmbeddingObjective)
class EmbeddingMSE(EmbeddingTerm):
    def forward(self, student, teacher, labels):
        return F.mse_loss(*self.embeddings(student, teacher))


@objective("embedding_cosine", "sentence embeddings: 1 - cosine similarity to the teacher's", EmbeddingObjective)
class EmbeddingCosine(EmbeddingTerm):
    def forward(self, student, teacher, labels):
        return (1 - F.cosine_similarity(*self.embeddings(student, teacher), dim=-1)).mean()


@objective("embedding_similarity", "sentence embeddings: in-batch similarities, the teacher's softmax as soft targets",
           SimilarityObjective)
class EmbeddingSimilarity(EmbeddingTerm):
    def forward(self, student, teacher, labels):
        mine, theirs = self.embeddings(student, teacher)
        return similarity_kl(mine, theirs, self.spec.temperature)


def similarity_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) of each row's softmax over its cosine similarities to the other rows / T, averaged
    over rows (a sentence's similarity to itself is left out: it is 1 for both)."""
    def log_probs(embeddings: torch.Tensor) -> torch.Tensor:
        unit = F.normalize(embeddings.float(), dim=-1)
        scores = unit @ unit.T / temperature
        eye = torch.eye(len(scores), dtype=torch.bool, device=scores.device)
        return F.log_softmax(scores.masked_fill(eye, float("-inf")), dim=-1).masked_fill(eye, 0.0)

    if len(student) < 3:  # fewer than two other sentences: no distribution to match
        return student.sum() * 0.0
    return F.kl_div(log_probs(student), log_probs(teacher), log_target=True, reduction="batchmean")


@objective("embedding_pairs", "sentence pairs: each text's similarities to the batch's partner texts, the teacher's "
           "softmax as soft targets (needs data.text_pair_column)", PairObjective)
class EmbeddingPairs(EmbeddingTerm):
    @classmethod
    def check_data(cls, spec, train, where):
        if not getattr(train, "holds_pairs", False):
            raise BequestError(f"{where} contrasts the texts of training pairs, and data.train holds single sentences: "
                               "name the second text's column in data.text_pair_column, or use embedding_similarity")

    def forward(self, student, teacher, labels):
        mine, theirs = self.embeddings(student, teacher)
        first, second = partners(labels)
        return pair_kl(mine[first], mine[second], theirs[first], theirs[second], self.spec.temperature)


def partners(pair_numbers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch positions of the first and of the second text of every pair the batch holds both texts of
    (rows of one pair share its number; the first in batch order is its first text)."""
    order = torch.argsort(pair_numbers, stable=True)
    ranked = pair_numbers[order]
    same = ranked[1:] == ranked[:-1]
    return order[:-1][same], order[1:][same]


def pair_kl(first: torch.Tensor, second: torch.Tensor, teacher_first: torch.Tensor, teacher_second: torch.Tensor,
            temperature: float) -> torch.Tensor:
    """Mean of KL(teacher || student) over the rows of the first texts' softmax over the second texts' cosine
    similarities / T, and of the second texts' over the first texts'."""
    def log_probs(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T / temperature
        return F.log_softmax(scores, dim=-1), F.log_softmax(scores.T, dim=-1)

    if len(first) < 2:  # one pair: no other text to tell its partner from
        return first.sum() * 0.0
    student, teacher = log_probs(first, second), log_probs(teacher_first, teacher_second)
    return sum(F.kl_div(s, t, log_target=True, reduction="batchmean") for s, t in zip(student, teacher)) / 2
