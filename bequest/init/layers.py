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
from bequest.models.loading import layer_list

STRATEGIES = ("lower", "upper", "uniform", "stride", "random")


def select_layers(strategy: str | list[int], student_layers: int, teacher_layers: int) -> list[int]:
    """Which teacher layer each student layer starts from.

    `uniform` spreads the choice evenly including both ends: round(linspace(0, L-1, k)),
    rounding halves up; it gives DistilBERT's 0,2,4,7,9,11 for 6 of 12 layers. `stride` takes
    every (L/k)-th layer from the first, floor(i*L/k), as ETD does: 0,2,4 for 3 of 6.
    """
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
    if strategy == "lower":
        return list(range(student_layers))
    if strategy == "upper":
        return list(range(teacher_layers - student_layers, teacher_layers))
    if strategy == "uniform":
        if student_layers == 1:
            return [teacher_layers - 1]
        step = (teacher_layers - 1) / (student_layers - 1)
        return [int(i * step + 0.5) for i in range(student_layers)]
    if strategy == "stride":  # ETD's uniform choice: 0, n/m, 2n/m, ...
        return [i * teacher_layers // student_layers for i in range(student_layers)]
    raise BequestError(f"unknown layer strategy '{strategy}': use one of {', '.join(STRATEGIES)} or a list of indices")


def init_student(teacher: nn.Module, strategy: str | list[int], student_layers: int | None, seed: int) -> tuple[nn.Module, list[int] | None]:
    """Build a student of `student_layers` layers from `teacher`; return it and the copied layer indices."""
    teacher_depth = teacher.config.num_hidden_layers
    depth = student_layers or teacher_depth
    chosen = None if strategy == "random" else select_layers(strategy, depth, teacher_depth)
    if strategy == "random" and depth > teacher_depth:
        select_layers("lower", depth, teacher_depth)  # same error as the other strategies
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
