"""A plugin defined outside bequest/: an objective, a student initialiser and a task kind (with a task
that uses it), each registered by name. `plugins: [plugins.example]` in a recipe imports it; then

    task: sst2_smoothed
    students:
      - layers: 2
        freeze: {prefixes: [embeddings]}
        objectives: {kd: {}, cls_cosine: {weight: 0.5}}

is a recipe like any other. docs/extending.md walks through it.
"""

from __future__ import annotations

import torch.nn.functional as F
from pydantic import Field

from bequest.data.tasks import TaskSpec, register_task
from bequest.errors import BequestError
from bequest.init.base import Initialiser, initialiser
from bequest.kinds import TASK_KINDS
from bequest.kinds.classification import Classification
from bequest.objectives.base import ObjectiveConfig, Term, objective
from bequest.section import Section

# ---------------------------------------------------------------- an objective


class CLSCosineObjective(ObjectiveConfig):
    """1 - cosine similarity of the student's and the teacher's last [CLS] states (same width)."""


@objective("cls_cosine", "1 - cosine of the last [CLS] states of student and teacher (an example plugin)")
class CLSCosine(Term):
    Config = CLSCosineObjective
    hidden = teacher_pass = True  # reads hidden states, the teacher's too

    def __init__(self, teacher_layer: int):
        super().__init__()
        self.teacher_layer = teacher_layer

    @classmethod
    def build(cls, spec, ctx, where):
        if ctx.student.hidden_size != ctx.teacher.hidden_size:
            raise BequestError(f"{where}: the student and the teacher must be as wide")
        return cls(ctx.teacher.num_hidden_layers)

    def teacher_reads(self):
        return {("hidden", self.teacher_layer)}

    def forward(self, student, teacher, labels):
        return (1 - F.cosine_similarity(student.hidden[-1][:, 0], teacher.hidden[self.teacher_layer][:, 0], dim=-1)).mean()


# ---------------------------------------------------------------- an initialiser


class FreezeConfig(Section):
    """Parameters kept at their initial values while the student trains."""

    prefixes: list[str] = Field(min_length=1, description="names (below the base model) of the modules to freeze, e.g. embeddings")


@initialiser("freeze", "keep some of the student's modules at their inherited weights (an example plugin)", FreezeConfig)
class Freeze(Initialiser):
    def check(self, spec, ctx):
        if not self._parameters(spec, ctx.teacher):
            raise BequestError(f"freeze: no parameter of the teacher's base model starts with {', '.join(spec.prefixes)}")

    def build(self, spec, ctx, start):
        frozen = self._parameters(spec, start.model)
        for _, param in frozen:
            param.requires_grad_(False)
        start.description += f" + frozen {', '.join(spec.prefixes)} ({len(frozen)} tensors)"
        return start

    def finalise(self, spec, model, ctx):
        for _, param in self._parameters(spec, model):
            param.requires_grad_(True)  # the exported model is an ordinary one
        return model, {"frozen": spec.prefixes}

    @staticmethod
    def _parameters(spec, model):
        base = model.base_model
        return [(name, param) for name, param in base.named_parameters() if name.startswith(tuple(spec.prefixes))]


# ---------------------------------------------------------------- a task kind, and a task of that kind


class SmoothedClassification(Classification):
    """Classification whose task loss is cross-entropy with label smoothing 0.1 (an example plugin)."""

    smoothing = 0.1

    def loss(self, logits, labels, mask=None):
        return F.cross_entropy(logits, labels, label_smoothing=self.smoothing)


SMOOTHED = TASK_KINDS.register("smoothed_classification", SmoothedClassification(),
                               description=SmoothedClassification.__doc__)
register_task(TaskSpec("sst2_smoothed", "SST-2", "sst2", ("0", "1"), ("accuracy",), "accuracy", ("dev",),
                       "smoothed_classification"))
