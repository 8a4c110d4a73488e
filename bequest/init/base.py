"""What a student initialiser is: one way to build or change a student, switched on by its key.

Each initialiser is a key of a student's recipe section (`extract`, `wid`, `sps`, `model`; layer
selection's keys are the student's own `layers` and `init`). An `Initialiser` says, before any
work, whether it can apply (`validate`, `check`, `check_schedule`); what config the student will
have (`shape`); how it builds or changes the model (`build`); what it does while the student
trains (`callbacks`); and how the trained model becomes the exported one (`finalise`). The run
calls these hooks for the student's initialisers in registration order and names none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from bequest.registry import Registry

INITIALISERS = Registry("student initialiser", "student initialisers (keys of a student)")


@dataclass
class StudentContext:
    """What an initialiser may read while it checks, builds and finalises one student."""

    student: Any  # the student's recipe section (StudentConfig)
    teacher: nn.Module
    teacher_source: str
    tokenizer: Any
    tokenizer_name: str
    task: Any  # TaskSpec, or None on a corpus
    seed: int
    pad_token_id: int
    train: Any = None  # the run's training data (Encoded or Segments); None while checking the models
    sample: Any = None  # data whose longest batch checks a finalised model against the trained one
    eval_batch_size: int = 32
    log_dir: Path | None = None  # where per-student logs go; None on processes that write nothing
    say: Callable[[str], None] = print  # a line for the user, about this student


@dataclass
class Start:
    """The student before training: the model, the teacher layers it copied, a description, and
    logs worth keeping (name -> JSON content, written to logs/<student>.<name>.json)."""

    model: nn.Module
    layers_from: list[int] | None
    description: str
    logs: dict[str, Any] = field(default_factory=dict)


class Initialiser:
    builds = False  # makes the student itself (else it changes the student built before it)

    def validate(self, spec, student) -> None:
        """Recipe-level check against the student's other keys; raise ValueError."""

    def check(self, spec, ctx: StudentContext) -> None:
        """Check against the teacher and tokenizer before any work; raise BequestError."""

    def check_schedule(self, spec, student, examples: int) -> str | None:
        """Check against the student's training length (its training data has `examples`); return an error or None."""
        return None

    def shape(self, spec, config, ctx: StudentContext):
        """The student's config (a copy of `config` changed, or another), before any model is built."""
        return config

    def build(self, spec, ctx: StudentContext, start: Start | None) -> Start:
        raise NotImplementedError

    def callbacks(self, spec, model: nn.Module) -> list:
        """Training-loop callbacks (`bequest.train.callbacks.Callback`) while the student trains."""
        return []

    def finalise(self, spec, model: nn.Module, ctx: StudentContext) -> tuple[nn.Module, dict]:
        """The model to export after training, and fields for the student's record."""
        return model, {}


def initialiser(key: str, description: str, config: Any = None):
    """Register an `Initialiser` class under the student key `key` (with `config` its recipe section)."""
    def add(cls: type[Initialiser]) -> type[Initialiser]:
        INITIALISERS.register(key, cls(), config=config, description=description)
        return cls
    return add
