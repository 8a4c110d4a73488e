"""Task kinds: everything one kind of task supplies - its splits read and tokenised, its model head,
its task and soft-target losses, its predictions turned into metrics, and how its models are exported.

The kind, not a tensor's shape, says how logits are read. GLUE tasks and SQuAD v1.1/v2.0 are
presets (`bequest.data.tasks`) of the kinds registered here; a new kind is a module with a
`TaskKind` subclass and its `TASK_KINDS.register`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForSequenceClassification

from bequest.data.features import Encoded, encode, model_inputs
from bequest.eval.predict import predict
from bequest.models.outputs import output_logits
from bequest.registry import Registry

TASK_KINDS = Registry("task kind", "task kinds")


@dataclass
class TaskData:
    task: object  # TaskSpec
    train: Encoded | None
    dev: dict[str, Encoded]
    file_hashes: dict[str, str] = field(default_factory=dict)
    test: Encoded | None = None  # the user's data.test: scored once, at the end


class TaskKind:
    """What a kind of task supplies. Subclasses set the head and the losses, read the data and score."""

    auto_class = AutoModelForSequenceClassification
    has_classes = True  # the head predicts classes (PTP builds its classes from them)
    labelled = True  # its data has labels (objectives that read them, kd and task, work)
    embeds = False  # its models give sentence embeddings (the embedding objectives compare them)
    trains_teacher = True  # a teacher without this kind's head is fine-tuned on the task first
    takes_transfer = False  # a student can also learn from unlabelled texts (`transfer_set`, data.transfer)
    baseline: str | None = None  # what a model knowing only the training labels predicts (`baseline_scores`); None: none
    default_objectives = {"kd": {}}  # a student's loss when its recipe names none
    pipeline_tag = "text-classification"  # the hub's name for what its models do
    # a call of a plain transformers pipeline on the exported folder, for its model card (None: the kind has none)
    pipeline_example = 'pipeline("text-classification", model=folder)("a charming and affecting journey")'
    library_name = "transformers"  # the library the model card shows it used with (hub metadata)
    example_import = "from transformers import pipeline"  # what the card's example needs

    @property
    def model_class(self) -> str:
        """The transformers class the model card loads the export with."""
        return self.auto_class.__name__

    def load(self, task, data_dir: str | None, tokenizer, max_length: int, max_train_examples: int | None, seed: int,
             with_train: bool, max_eval_examples: int | None, stride: int, split_by_article: float | None,
             data=None, cache_dir: str | None = None) -> TaskData:
        """Read the training split (optional) and every dev split of `task`, tokenised; record the files' hashes.
        `data` is the recipe's data section, for a task on the user's own files (read into `cache_dir`)."""
        raise NotImplementedError

    def teacher_options(self, config) -> dict:
        """What loading the teacher takes from the recipe besides its head (refusing settings the kind cannot honour)."""
        return {}

    def resolve(self, spec, data, seed: int, cache_dir: str | None = None):
        """A task on the user's own files (`spec.from_data`), its classes read from `data` (the recipe's data section)."""
        return spec

    def metrics(self, task, data: Encoded, logits, qa) -> dict[str, float]:
        """Every metric of `task` on one split, from the model's logits on it (`qa`: how answers are read)."""
        raise NotImplementedError

    def scoring_settings(self, config) -> dict:
        """What else `bequest evaluate` needs to score a model again exactly as the run did."""
        return {}

    def describe(self, task) -> str:
        """What a student of this kind is, for its model card's title: 'student for GLUE SST2'."""
        return f"student for {task.name}"

    def transfer_set(self, task, labelled: Encoded, data, tokenizer, seed: int, teacher: nn.Module, source: str) -> Encoded:
        """The labelled training set followed by data.transfer's texts and data.augment's copies (kinds with
        `takes_transfer`); `teacher` is the pretrained teacher, loaded from `source`."""
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def baseline_scores(self, task, train: Encoded, data: Encoded, qa) -> dict[str, float]:
        """The scores on `data` of `baseline` (a model that knows only the training labels), on the kind's metrics."""
        raise NotImplementedError

    def labelled_loss(self, logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None,
                      labelled: torch.Tensor | None) -> torch.Tensor:
        """The task loss over the examples that carry a label (`labelled`; None: all): a transfer set's examples
        have none. Zero, still in the graph, for a batch of transfer examples only."""
        if labelled is None or bool(labelled.all()):
            return self.loss(logits, labels, mask)
        if not bool(labelled.any()):
            return logits.sum() * 0.0
        return self.loss(logits[labelled], labels[labelled], None if mask is None else mask[labelled])

    def soft_loss(self, student: torch.Tensor, teacher: torch.Tensor, temperature: float,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def kd_loss(self, student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, alpha: float,
                temperature: float, mask: torch.Tensor | None = None, labelled: torch.Tensor | None = None) -> torch.Tensor:
        """(1 - alpha) * task loss (over the labelled examples) + alpha * soft-target loss (over all) (Hinton et al.)."""
        return ((1 - alpha) * self.labelled_loss(student, labels, mask, labelled)
                + alpha * self.soft_loss(student, teacher, temperature, mask))

    # the columns `bequest predict` reads from a table (the first one from a text file, a text a line); later ones optional
    input_columns: tuple[str, ...] = ("text", "text_pair")

    def prediction_inputs(self, task, columns: dict[str, list], tokenizer, max_length: int, qa) -> Encoded:
        """New texts (`columns`: input column -> values), tokenised for the model."""
        pair = columns.get(self.input_columns[1]) if len(self.input_columns) > 1 else None
        return encode(tokenizer, columns[self.input_columns[0]], pair, [0] * len(columns[self.input_columns[0]]),
                      max_length)

    def decode(self, task, data: Encoded, logits: np.ndarray, labels: list[str], qa) -> list[dict]:
        """What the model says of each text: for classes, the best one and its probability."""
        probabilities = torch.softmax(torch.from_numpy(np.asarray(logits, dtype=np.float64)), dim=-1).numpy()
        return [{"label": labels[int(row.argmax())], "score": float(row.max())} for row in probabilities]

    def batch_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The task loss of `model` on a training batch: what fine-tuning and Taylor importance minimise."""
        return self.loss(output_logits(model(**model_inputs(batch))), batch["labels"], batch["attention_mask"])


def kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(t/T) || softmax(s/T)) * T^2 over rows, averaged: the T^2 keeps the gradient scale independent of T."""
    student_log_probs = F.log_softmax(student / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher.to(student.dtype) / temperature, dim=-1)
    return F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="batchmean") * temperature**2


def load_task_data(task, data_dir: str | None, tokenizer, max_length: int, max_train_examples: int | None, seed: int,
                   with_train: bool = True, max_eval_examples: int | None = None, stride: int = 128,
                   split_by_article: float | None = None, data=None, cache_dir: str | None = None) -> TaskData:
    """A task's splits through its kind (`stride` and `split_by_article` concern extractive QA only; `data`,
    the recipe's data section, a task on the user's own files)."""
    return task.kind.load(task, data_dir, tokenizer, max_length, max_train_examples, seed, with_train, max_eval_examples,
                          stride, split_by_article, data, cache_dir)


def evaluate(model: nn.Module, task, dev: dict[str, Encoded], batch_size: int, pad_token_id: int, qa=None,
             primary: str | None = None) -> dict[str, float]:
    """Every metric of the task on every split; keys of a split other than `primary` (default: the task's first
    dev split) get its name (MNLI mismatched)."""
    def scores(split: str, data: Encoded) -> dict[str, float]:
        return task.kind.metrics(task, data, predict(model, data, batch_size, pad_token_id, desc=f"evaluating {split}"), qa)

    return by_split(task, dev, scores, primary)


def baseline(task, train: Encoded, dev: dict[str, Encoded], qa=None, primary: str | None = None) -> dict[str, float]:
    """The kind's baseline (`TaskKind.baseline`, e.g. the majority class) scored as `evaluate` scores a model."""
    return by_split(task, dev, lambda split, data: task.kind.baseline_scores(task, train, data, qa), primary)


def by_split(task, dev: dict[str, Encoded], scores, primary: str | None) -> dict[str, float]:
    """`scores(split, data)` of every split, keyed as `evaluate` says."""
    merged = {}
    for split, data in dev.items():
        suffix = "" if split == (primary or task.dev_splits[0]) else "_" + split.removeprefix("dev_")
        merged.update({name + suffix: value for name, value in scores(split, data).items()})
    return merged
