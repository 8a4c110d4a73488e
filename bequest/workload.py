"""What a run distils on: a task (labelled splits, a task-ready teacher, dev metrics) or a corpus
(raw text, the bare teacher, a held-out distillation loss). The run asks its workload; it never
asks which one it has.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel

from bequest.config import RunConfig
from bequest.data.corpus import Segments, load_segments, split_segments
from bequest.data.features import inference_batches
from bequest.data.tasks import get_task
from bequest.errors import BequestError
from bequest.io import sha256_file
from bequest.kinds import TaskData, baseline, evaluate, load_task_data
from bequest.models.loading import load_encoder, task_model_class
from bequest.train.teacher import (
    cache_root,
    load_teacher,
    prepare_teacher,
    scoring_settings,
)


class TaskWorkload:
    """Distillation on a task: its splits, its head, its dev metrics."""

    def __init__(self, config: RunConfig):
        self.config, self.task = config, get_task(config.task)
        self.datasets_cache = str(cache_root(config) / "datasets")  # the user's files as Arrow tables, tokenised
        if self.task.from_data:  # its classes (the head's size and names) come from the training labels
            self.task = self.task.kind.resolve(self.task, config.data, config.seed, self.datasets_cache)
        if config.eval.metric is not None:
            if config.eval.metric not in self.task.metrics:
                raise BequestError(f"eval.metric: {config.eval.metric!r} is not a metric of {self.task.name}: use one of "
                                   f"{', '.join(self.task.metrics)}")
            self.task = replace(self.task, main_metric=config.eval.metric)
        self.length_key, self.max_length = "data.max_length", config.data.max_length
        self.auto_class = task_model_class(self.task)
        self.train = self.dev = self.test = None
        self.student_train = None  # what students train on: train, then data.transfer's texts when there are some
        self.file_hashes: dict[str, str] = {}

    def load_teacher(self) -> tuple[nn.Module, bool]:
        model, has_head = load_teacher(self.config, self.task)
        return model, has_head or not self.task.kind.trains_teacher

    def load_data(self, tokenizer) -> None:
        data = self.config.data
        loaded = load_task_data(self.task, data.dir, tokenizer, data.max_length, data.max_train_examples, self.config.seed,
                                max_eval_examples=data.max_eval_examples, stride=self.config.qa.stride,
                                split_by_article=data.split_by_article, data=data,
                                cache_dir=self.datasets_cache)
        self.train, self.dev, self.test = loaded.train, loaded.dev, loaded.test
        self.file_hashes, self.pad = loaded.file_hashes, tokenizer.pad_token_id
        self.student_train = self.train
        self.at_max_length = {split: sum(length >= data.max_length for length in encoded.lengths)
                              for split, encoded in self.splits().items()}

    def add_transfer(self, tokenizer, teacher: nn.Module) -> None:
        """Students train on train, then data.transfer's texts and data.augment's copies of train (the recipe's
        unlabelled examples), when it has them. `teacher`: the pretrained teacher, before any fine-tuning."""
        data = self.config.data
        if data.transfer is None and data.augment is None:
            return
        self.student_train = self.task.kind.transfer_set(self.task, self.train, data, tokenizer, self.config.seed, teacher,
                                                         self.config.teacher.model)
        if data.transfer is not None and not data.transfer.startswith("hub:"):
            self.file_hashes[data.transfer] = sha256_file(data.transfer)

    def splits(self) -> dict:
        """Every split read: train, the dev splits, and the test split when there is one."""
        return {"train": self.train, **self.dev, **({"test": self.test} if self.test is not None else {})}

    def notes(self) -> list[str]:
        """What the log says of the data once every check passed: how many examples were cut at max_length."""
        cut = {split: count for split, count in self.at_max_length.items() if count}
        if not cut:
            return []
        counts = ", ".join(f"{count} of {len(self.splits()[split])} {split}" for split, count in cut.items())
        return [f"{counts} examples reach {self.length_key} {self.max_length} (longer ones are cut there; raise it to "
                "keep more of them)"]

    @property
    def sample(self):
        """Data to time models and check a finalised student on: the first dev split."""
        return next(iter(self.dev.values()))

    def ready_teacher(self, tokenizer, accelerator, teacher: nn.Module, has_head: bool) -> tuple[nn.Module, dict]:
        """The task-trained teacher (fine-tuned once and cached when it needs to be) and where it came from."""
        data = TaskData(self.task, self.train, self.dev, self.file_hashes)
        return prepare_teacher(self.config, data, tokenizer, accelerator, teacher, has_head)

    def score(self, model: nn.Module) -> dict[str, float]:
        return evaluate(model, self.task, self.dev, self.config.eval.batch_size, self.pad, self.config.qa)

    def final_scores(self, model: nn.Module) -> dict:
        """A final model's dev scores and, once, its test scores (data.test)."""
        scores = {"dev": self.score(model)}
        if self.test is not None:
            scores["test"] = evaluate(model, self.task, {"test": self.test}, self.config.eval.batch_size, self.pad,
                                      self.config.qa, primary="test")
        return scores

    def baselines(self) -> dict:
        """{the kind's baseline ("majority class"): its scores as `final_scores` gives a model's}; {} when it has none."""
        kind, qa = self.task.kind, self.config.qa
        if kind.baseline is None:
            return {}
        scores = {"dev": baseline(self.task, self.train, self.dev, qa)}
        if self.test is not None:
            scores["test"] = baseline(self.task, self.train, {"test": self.test}, qa, primary="test")
        return {kind.baseline: scores}

    def evaluate_stage(self, distiller: nn.Module) -> dict[str, float]:
        return self.score(distiller.student)

    def teacher_scores(self, teacher: nn.Module) -> dict:
        return self.final_scores(teacher)

    def exported_scores(self, folder: Path, device, history: list[dict]) -> dict:
        """A student's scores, from the files written (not the model in memory)."""
        model = self.auto_class.from_pretrained(folder, use_safetensors=True, trust_remote_code=False).to(device)
        return self.final_scores(model)

    def record(self) -> dict:
        """What a model's record says of the workload: the task, its metrics and how they were scored."""
        kind = self.task.kind
        return {"task": self.task.name, "task_kind": self.task.kind_name, "metrics": list(self.task.metrics),
                **scoring_settings(self.config),
                "pipeline_tag": kind.pipeline_tag, "pipeline_example": kind.pipeline_example,
                "teacher_as_is": not kind.trains_teacher, "model_class": kind.model_class,
                "library_name": kind.library_name, "example_import": kind.example_import,
                "describes": kind.describe(self.task)}

    def describe(self) -> dict:
        return {"task": self.task.name, "corpus": None, "main_metric": self.task.main_metric}

    def sizes(self) -> dict:
        return {"train_examples": len(self.train), "transfer_examples": len(self.student_train) - len(self.train),
                "dev_examples": {split: len(d) for split, d in self.dev.items()},
                "test_examples": len(self.test) if self.test is not None else None,
                "examples_at_max_length": self.at_max_length, "heldout_segments": None}


class CorpusWorkload:
    """Task-agnostic distillation on raw text: segments to train on, held-out ones to measure the loss on."""

    auto_class = AutoModel

    def __init__(self, config: RunConfig):
        self.config, self.task = config, None
        self.length_key, self.max_length = "corpus.max_length", config.corpus.max_length
        self.train = self.heldout = None
        self.file_hashes: dict[str, str] = {}

    def load_teacher(self) -> tuple[nn.Module, bool]:
        return load_encoder(self.config.teacher.model), False

    def load_data(self, tokenizer) -> None:
        corpus = self.config.corpus
        segments, self.file_hashes = load_segments(corpus, tokenizer, corpus.max_length, cache_root(self.config))
        self.train, self.heldout = split_segments(segments, corpus.heldout_segments, corpus.max_segments, self.config.seed)
        self.student_train = self.train
        self.pad = tokenizer.pad_token_id

    def add_transfer(self, tokenizer, teacher: nn.Module) -> None:
        """A corpus is raw text already (the recipe refuses data.transfer and data.augment on one)."""

    def notes(self) -> list[str]:
        return []  # segments are cut to corpus.max_length by design

    @property
    def sample(self):
        return self.heldout

    def ready_teacher(self, tokenizer, accelerator, teacher: nn.Module, has_head: bool) -> tuple[nn.Module, dict]:
        return teacher, {"model": self.config.teacher.model, "finetuned_by_bequest": False}

    def evaluate_stage(self, distiller: nn.Module) -> dict[str, float]:
        return {"heldout_loss": heldout_loss(distiller, self.heldout, self.config.eval.batch_size, self.pad)}

    def baselines(self) -> dict:
        return {}  # nothing to compare a held-out distillation loss with

    def teacher_scores(self, teacher: nn.Module) -> dict:
        return {}  # a bare encoder has no task to be scored on; students are measured by their distillation loss

    def exported_scores(self, folder: Path, device, history: list[dict]) -> dict:
        return {"heldout_loss": history[-1]["heldout_loss"]}

    def record(self) -> dict:
        return {"task": None, "metrics": [], "max_length": self.config.corpus.max_length,
                "eval_batch_size": self.config.eval.batch_size, "pipeline_tag": "feature-extraction",
                "model_class": "AutoModel", "describes": "general student"}

    def describe(self) -> dict:
        return {"task": None, "corpus": self.config.corpus.model_dump(mode="json"), "main_metric": "heldout_loss"}

    def sizes(self) -> dict:
        return {"train_examples": len(self.train), "transfer_examples": 0, "dev_examples": None,
                "heldout_segments": len(self.heldout)}


def workload(config: RunConfig) -> TaskWorkload | CorpusWorkload:
    return TaskWorkload(config) if config.task else CorpusWorkload(config)


@torch.no_grad()
def heldout_loss(distiller: nn.Module, data: Segments, batch_size: int, pad_token_id: int) -> float:
    """The stage's loss on held-out text, without dropout: the task-agnostic progress measure.

    Its own fixed random stream makes input-changing objectives (masking) draw the same at every evaluation and leaves the
    training stream untouched."""
    was_training = distiller.training
    distiller.eval()
    device = next(distiller.parameters()).device
    total = 0.0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), distiller.live_teacher():
        torch.manual_seed(0)
        for indices in inference_batches(data.lengths, batch_size):
            batch = {k: v.to(device) for k, v in data.batch(indices, pad_token_id).items()}
            total += distiller(batch).item() * len(indices)
    distiller.train(was_training)
    return total / len(data)
