"""Objectives on the model's outputs: the task loss alone, and logit KD (Hinton et al.)."""

from __future__ import annotations

from pydantic import Field

from bequest.objectives.base import ObjectiveConfig, Term, objective


class TaskObjective(ObjectiveConfig):
    """Cross-entropy on the labels (MSE for regression): plain fine-tuning when used alone."""


class KDObjective(ObjectiveConfig):
    """Logit KD: (1-alpha)*task loss + alpha*KL(teacher/T || student/T)*T^2 (MSE for regression)."""

    alpha: float = Field(0.5, ge=0, le=1, description="weight of the soft-target term; 1 - alpha weighs the task loss")
    temperature: float = Field(2.0, gt=0, description="softmax temperature of both logits (the KL term is scaled by T^2)")

    conflicts = {"task": "kd already includes the task loss with weight 1-alpha: drop task, or set kd.alpha"}

    def summary(self) -> str:
        return f"(alpha={self.alpha:g}, T={self.temperature:g})"


@objective("task", "the task loss alone: cross-entropy, MSE for regression (the no-KD baseline)")
class Task(Term):
    Config = TaskObjective
    needs_labels = skips_unlabelled = True

    def __init__(self, kind):
        super().__init__()
        self.kind = kind

    @classmethod
    def build(cls, spec, ctx, where):
        return cls(ctx.kind)

    def forward(self, student, teacher, labels):
        return self.kind.labelled_loss(student.logits, labels, student.mask, student.labelled)


@objective("kd", "logit KD: (1-alpha)*task + alpha*KL(teacher/T || student/T)*T^2")
class LogitKD(Term):
    Config = KDObjective
    needs_labels = reads_teacher_logits = skips_unlabelled = True

    def __init__(self, alpha: float, temperature: float, kind):
        super().__init__()
        self.alpha, self.temperature, self.kind = alpha, temperature, kind

    @classmethod
    def build(cls, spec, ctx, where):
        return cls(spec.alpha, spec.temperature, ctx.kind)

    def forward(self, student, teacher, labels):
        return self.kind.kd_loss(student.logits, teacher.logits, labels, self.alpha, self.temperature, student.mask,
                                 student.labelled)
