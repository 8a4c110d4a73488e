"""What an objective is: a recipe section, a term of the stage's loss, and what the term needs.

A family module (logit.py, hidden.py, ...) defines a `Term` subclass with its `Config` and
registers it with `@objective(name)`; the recipe schema's `objectives:` keys are the registry's
names. The distiller and the run read only the class attributes below, never an objective's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from pydantic import Field, field_validator
from torch import nn
from transformers import PretrainedConfig

from bequest.errors import BequestError
from bequest.kinds import TaskKind
from bequest.models.capture import Captured
from bequest.objectives.mapping import known_mapping, layer_pairs
from bequest.registry import Registry
from bequest.section import Section

OBJECTIVES = Registry("objective", "objectives (keys of a stage's objectives:)")


class ObjectiveConfig(Section):
    weight: float = Field(1.0, ge=0, description="this term's weight in the stage's summed loss")

    # other objectives this one cannot share a stage with: name -> why (the error message)
    conflicts: ClassVar[dict[str, str]] = {}

    def summary(self) -> str:
        """Settings worth showing beside the term's name in tables and model cards."""
        return ""


class LayerObjectiveConfig(ObjectiveConfig):
    mapping: str | list[tuple[int, int]] | None = Field(
        None, description="a layer mapping (bequest list: uniform, skip, last) or [[student, teacher], ...]; default per objective")

    @field_validator("mapping")
    @classmethod
    def _known(cls, value):
        return known_mapping(value)


class Term(nn.Module):
    """One term of a stage's loss, computed from the student's and the teacher's captured tensors."""

    Config: ClassVar[type[ObjectiveConfig]] = ObjectiveConfig
    hidden = False  # reads hidden states
    attention = False  # reads Q/K/V (and the scores built from them)
    teacher_pass = False  # needs the teacher's internals, not only its cached logits
    needs_labels = False  # reads a task's labels: refused on a corpus
    skips_unlabelled = False  # with needs_labels: reads them only where a batch has them (transfer sets: data.transfer)
    needs_embeddings = False  # compares sentence embeddings: only for a kind that embeds (not on a corpus)
    reads_teacher_logits = False  # reads the teacher's logits (computed once per stage and cached)
    transforms_inputs = False  # changes the inputs both models see (`transform`): no teacher output can be cached

    @classmethod
    def build(cls, spec: ObjectiveConfig, ctx: BuildContext, where: str) -> Term:
        raise NotImplementedError

    @classmethod
    def check_data(cls, spec: ObjectiveConfig, train, where: str) -> None:
        """Refuse (BequestError) training data the term cannot learn from: called once the data is loaded."""

    def forward(self, student: Captured, teacher: Captured, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def teacher_reads(self) -> set[tuple[str, int]]:
        """The teacher tensors this term reads, as (hidden | queries | keys | values, layer)."""
        return set()

    def attach(self, student: nn.Module) -> None:
        """Called once with the student it trains (e.g. to tie a head to its embeddings)."""

    def prepare(self, teacher_logits: torch.Tensor | None, data) -> str | None:
        """Called once per stage before training, with the stage's data and the teacher's logits on it;
        returns a line worth printing, if any (e.g. thresholds fitted to the data)."""
        return None

    def transform(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The inputs both models see this step (only when `transforms_inputs`)."""
        return inputs


@dataclass
class BuildContext:
    """What a term's `build` may read: both configs, the tokenizer, the teacher's source, the task."""

    student: PretrainedConfig
    teacher: PretrainedConfig
    tokenizer: object
    teacher_source: str | None
    task: str | None
    kind: TaskKind  # the logits' kind says how they are compared

    def pairs(self, spec, default: str, space: str, where: str) -> list[tuple[int, int]]:
        return layer_pairs(spec.mapping or default, self.student.num_hidden_layers, self.teacher.num_hidden_layers, space, where)

    def same_heads(self, where: str) -> None:
        s_heads, t_heads = self.student.num_attention_heads, self.teacher.num_attention_heads
        if s_heads != t_heads:
            raise BequestError(f"{where} compares attention heads one to one, but the student has {s_heads} heads and the "
                               f"teacher {t_heads}: use minilmv2, whose relation heads need not match")


def objective(name: str, description: str, config: type[ObjectiveConfig] | None = None):
    """Register a `Term` class as the objective `name`, with its recipe section (`config`, default its `Config`)."""
    def add(term: type[Term]) -> type[Term]:
        term.Config = config or term.Config
        return OBJECTIVES.register(name, term, config=term.Config, description=description)
    return add
