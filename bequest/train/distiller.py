"""The module a distillation stage trains: the student plus its objectives' learned parts.

Its forward pass returns the stage's loss, so the training loop (and accelerate's wrappers for
several processes) treat distillation exactly like ordinary training. The teacher is held
outside the module tree: it is never trained, and never saved in the student's checkpoints.
What the terms read of the teacher comes, cheapest first, from cached logits and cached
internals (`TeacherOutputs`), else from one gradient-free teacher pass per step.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from bequest.data.features import model_inputs
from bequest.models.capture import Captured, run_captured
from bequest.objectives.base import Term
from bequest.train.teacher_outputs import TeacherOutputs


class Distiller(nn.Module):
    def __init__(self, student: nn.Module, terms: dict[str, tuple[float, Term]], teacher: nn.Module,
                 soft_targets: torch.Tensor | None, teacher_outputs: TeacherOutputs | None = None):
        super().__init__()
        self.student = student
        self.terms = nn.ModuleDict({name: term for name, (_, term) in terms.items()})
        self.weights = {name: weight for name, (weight, _) in terms.items()}
        self._teacher = (teacher,)  # a tuple, so nn.Module does not register it
        self.soft_targets = soft_targets
        self.teacher_outputs = teacher_outputs
        self.hidden = any(term.hidden for term in self.terms.values())
        self.attention = any(term.attention for term in self.terms.values())
        self.teacher_pass = any(term.teacher_pass for term in self.terms.values())
        for term in self.terms.values():
            term.attach(student)
        self.transforms = [term for term in self.terms.values() if term.transforms_inputs]
        if self.transforms:  # cached teacher outputs are of the unchanged inputs: ask the teacher about the changed ones
            self.soft_targets, self.teacher_outputs = None, None
            self.teacher_pass = self.teacher_pass or any(term.reads_teacher_logits for term in self.terms.values())

    @contextmanager
    def live_teacher(self):
        """Within the block the teacher runs on each batch: for data other than the training data,
        which the cached outputs belong to."""
        cached, self.teacher_outputs = self.teacher_outputs, None
        try:
            yield
        finally:
            self.teacher_outputs = cached

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = model_inputs(batch)
        for term in self.transforms:  # student and teacher both see the changed inputs (e.g. masked text)
            inputs = term.transform(inputs)
        student = run_captured(self.student, inputs, self.hidden, self.attention)
        teacher_model = self._teacher[0]
        if self.teacher_pass and self.teacher_outputs is not None:
            teacher = self.teacher_outputs.captured(batch["index"], inputs["attention_mask"])
        elif self.teacher_pass:
            with torch.no_grad():
                teacher = run_captured(teacher_model, inputs, self.hidden, self.attention)
        else:
            teacher = Captured(mask=inputs["attention_mask"], num_heads=teacher_model.config.num_attention_heads)
        if self.soft_targets is not None:  # cached logits: the same numbers in every epoch and run
            teacher.logits = self.soft_targets[batch["index"].cpu()].to(student.logits.device)
        labels = batch.get("labels")  # raw text has none
        student.labelled = batch.get("labelled")  # a transfer set's examples have no label
        return sum(self.weights[name] * term(student, teacher, labels) for name, term in self.terms.items())
