"""A student's initialisers, applied in order: layer selection (unless one builds the student
itself), then those its recipe section names, in the registry's order."""

from __future__ import annotations

import copy

from bequest.errors import BequestError
from bequest.init.base import INITIALISERS, Initialiser, Start, StudentContext


def initialisers(student) -> list[tuple[Initialiser, object]]:
    """(initialiser, its section) for every initialiser of `student`, in the order they apply."""
    chosen = [(INITIALISERS[key].implementation, spec) for key, spec in student.initialisers().items()]
    if not any(init.builds for init, _ in chosen):
        chosen.insert(0, (INITIALISERS["init"].implementation, student))
    return chosen


def check_student(ctx: StudentContext) -> None:
    for init, spec in initialisers(ctx.student):
        init.check(spec, ctx)


def check_schedule(student, examples: int) -> None:
    for init, spec in initialisers(student):
        problem = init.check_schedule(spec, student, examples)
        if problem:
            raise BequestError(problem)


def student_shape(ctx: StudentContext):
    """The config the student will train with, before any model is built."""
    config = copy.deepcopy(ctx.teacher.config)
    for init, spec in initialisers(ctx.student):
        config = init.shape(spec, config, ctx)
    return config


def build_student(ctx: StudentContext) -> Start:
    start = None
    for init, spec in initialisers(ctx.student):
        start = init.build(spec, ctx, start)
    return start


def training_callbacks(student, model) -> list:
    return [callback for init, spec in initialisers(student) for callback in init.callbacks(spec, model)]


def finalise_student(ctx: StudentContext, model) -> tuple[object, dict]:
    """The model to export and the record fields its initialisers add."""
    fields = {}
    for init, spec in initialisers(ctx.student):
        model, more = init.finalise(spec, model, ctx)
        fields.update(more)
    return model, fields
