"""Student initialisation by teacher layer selection ("How to Distill your BERT", Wang et al. 2023).

The student is the teacher's architecture with fewer layers. It copies the teacher's embeddings,
the chosen transformer layers in order, and everything after the encoder (pooler, task head).
`random` copies nothing: the no-inheritance baseline.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from bequest.errors import BequestError
from bequest.init.base import INITIALISERS, Initialiser, Start, initialiser
from bequest.models.loading import layer_list
from bequest.registry import Registry

LAYER_STRATEGIES = Registry("layer strategy", "layer strategies (a student's init:)")


def _lower(k: int, n: int) -> list[int]:
    """the teacher's first k layers"""
    return list(range(k))


def _upper(k: int, n: int) -> list[int]:
    """the teacher's last k layers"""
    return list(range(n - k, n))


def _uniform(k: int, n: int) -> list[int]:
    """evenly spread, both ends included: round(linspace(0, L-1, k)), halves up (DistilBERT's 0,2,4,7,9,11 of 12)"""
    if k == 1:
        return [n - 1]
    step = (n - 1) / (k - 1)
    return [int(i * step + 0.5) for i in range(k)]


def _stride(k: int, n: int) -> list[int]:
    """every (L/k)-th layer from the first, floor(i*L/k), as ETD does: 0,2,4 of 6"""
    return [i * n // k for i in range(k)]


LAYER_STRATEGIES.register("lower", _lower)
LAYER_STRATEGIES.register("upper", _upper)
LAYER_STRATEGIES.register("uniform", _uniform)
LAYER_STRATEGIES.register("stride", _stride)


def _random(k: int, n: int) -> None:
    """no teacher layer: every weight starts at random (the no-inheritance baseline)"""
    return None


LAYER_STRATEGIES.register("random", _random)


def select_layers(strategy: str | list[int], student_layers: int, teacher_layers: int) -> list[int] | None:
    """Which teacher layer each student layer starts from: a registered strategy's choice (None: none),
    or an explicit list."""
    if student_layers > teacher_layers:
        raise BequestError(
            f"the student has {student_layers} layers but the teacher only {teacher_layers}: "
            f"choose layers <= {teacher_layers}"
        )
    if isinstance(strategy, list):
        bad = [i for i in strategy if not 0 <= i < teacher_layers]
        if bad:
            raise BequestError(
                f"teacher layer index {bad[0]} is out of range: the teacher has layers 0..{teacher_layers - 1}"
            )
        return list(strategy)
    return LAYER_STRATEGIES[strategy].implementation(student_layers, teacher_layers)


def init_student(teacher: nn.Module, strategy: str | list[int], student_layers: int | None, seed: int) -> tuple[nn.Module, list[int] | None]:
    """Build a student of `student_layers` layers from `teacher`; return it and the copied layer indices."""
    teacher_depth = teacher.config.num_hidden_layers
    depth = student_layers or teacher_depth
    chosen = select_layers(strategy, depth, teacher_depth)
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = depth
    torch.manual_seed(seed)
    student = type(teacher)(config)  # the teacher's own class: a classifier, or a bare encoder
    if chosen is None:
        return student, None

    teacher_prefix, _ = layer_list(teacher)
    student_prefix, _ = layer_list(student)
    teacher_state = teacher.state_dict()
    inherited = {}
    for key in student.state_dict():
        source = key
        if key.startswith(student_prefix + "."):
            index, rest = key[len(student_prefix) + 1 :].split(".", 1)
            source = f"{teacher_prefix}.{chosen[int(index)]}.{rest}"
        inherited[key] = teacher_state[source].clone()
    student.load_state_dict(inherited)
    return student, chosen


@initialiser("init", "teacher layer selection: the student's layers and init keys (init: random copies none)")
class LayerSelection(Initialiser):
    """The default start: the teacher's architecture at the student's depth, with the chosen layers' weights.
    Its recipe keys are the student's own (`layers`, `init`), so its `spec` is the student section."""

    builds = True

    def check(self, student, ctx):
        depth = ctx.teacher.config.num_hidden_layers
        select_layers(student.init, student.layers or depth, depth)

    def shape(self, student, config, ctx):
        config = copy.deepcopy(config)
        config.num_hidden_layers = student.layers or config.num_hidden_layers
        return config

    def describe(self, student) -> str:
        return student.init if isinstance(student.init, str) else "explicit"

    def build(self, student, ctx, start):
        model, chosen = init_student(ctx.teacher, student.init, student.layers, ctx.seed)
        return Start(model, chosen, self.describe(student))


LAYER_SELECTION = INITIALISERS["init"].implementation
