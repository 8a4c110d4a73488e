"""Patient KD (Sun et al., 2019): normalised [CLS] states of mapped intermediate layers."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bequest.errors import BequestError
from bequest.objectives import losses
from bequest.objectives.base import LayerObjectiveConfig, objective
from bequest.objectives.hidden import Projected
from bequest.objectives.mapping import layer_pairs


class PKDObjective(LayerObjectiveConfig):
    """PKD: MSE of L2-normalised [CLS] states of mapped layers."""

    projection: Literal["shared", "per_layer"] = Field("shared", description="one projection for all layers, or one each (when widths differ)")


def pkd_default(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """PKD-skip: intermediate layers only; the last layer is the logit KD's job."""
    pairs = layer_pairs("uniform", student_layers, teacher_layers, "hidden")[1:-1]
    if not pairs:
        raise BequestError("pkd: a 1-layer student has no intermediate layer to map: give pkd.mapping, e.g. [[1, 6]]")
    return pairs


@objective("pkd", "PKD: normalised [CLS] states of mapped layers")
class PKD(Projected):
    Config = PKDObjective

    @classmethod
    def build(cls, spec, ctx, where):
        s_layers, t_layers = ctx.student.num_hidden_layers, ctx.teacher.num_hidden_layers
        chosen = layer_pairs(spec.mapping, s_layers, t_layers, "hidden", where) if spec.mapping else pkd_default(s_layers, t_layers)
        return cls(chosen, ctx.student.hidden_size, ctx.teacher.hidden_size, spec.projection)

    def forward(self, student, teacher, labels):
        return sum(losses.pkd(self.project(n, student.hidden[s][:, 0]), teacher.hidden[t][:, 0])
                   for n, (s, t) in enumerate(self.pairs))
