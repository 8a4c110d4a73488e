"""A stage's loss: its objectives' terms, built through the registry, with their weights."""

from __future__ import annotations

from transformers import PretrainedConfig

from bequest.data.tasks import get_task
from bequest.kinds import CLASSIFICATION
from bequest.objectives.base import OBJECTIVES, BuildContext, Term


def build_terms(objectives, student: PretrainedConfig, teacher: PretrainedConfig,
                tokenizer=None, teacher_source: str | None = None, task=None) -> dict[str, tuple[float, Term]]:
    """Turn a stage's objectives (an `ObjectivesConfig`) into weighted terms,
    checking every layer and shape they need.

    `tokenizer` gives the mask and special tokens to the mlm term, `teacher_source` (the teacher's
    folder or hub id) the trained MLM head it starts from where the checkpoint has one, `task` (a
    TaskSpec, or a task's name) the task kind and the ptp term its thresholds."""
    task = get_task(task) if isinstance(task, str) else task
    ctx = BuildContext(student, teacher, tokenizer, teacher_source, task.name if task else None,
                       task.kind if task else CLASSIFICATION)
    return {name: (spec.weight, OBJECTIVES[name].implementation.build(spec, ctx, f"objective {name}"))
            for name, spec in objectives.active().items()}


def check_objective_data(objectives, train) -> None:
    """Every active objective's check of the training data (pairs where a term contrasts pairs, ...)."""
    for name, spec in objectives.active().items():
        OBJECTIVES[name].implementation.check_data(spec, train, f"objective {name}")


def any_term(terms: dict[str, tuple[float, Term]], attribute: str) -> bool:
    """Whether some term has the class attribute `attribute` (needs_labels, reads_teacher_logits, ...)."""
    return any(getattr(term, attribute) for _, term in terms.values())
