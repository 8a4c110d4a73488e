"""Sequence classification and regression on GLUE-format data: one label (or score) per sentence or pair."""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F

from bequest.data.features import Encoded, encode, subsample
from bequest.data.glue import glue_split_path, load_glue_split, takes_pairs
from bequest.data.transfer import with_transfer
from bequest.data.user_files import encode_table, source_hashes, user_task
from bequest.errors import BequestError
from bequest.eval.metrics import compute_metrics
from bequest.io import sha256_file
from bequest.kinds.base import TASK_KINDS, TaskData, TaskKind, kl


def _encode_split(dataset, tokenizer, max_length: int, keep: list[int] | None = None) -> Encoded:
    if keep is not None and len(keep) < len(dataset):
        dataset = dataset.select(keep)
    columns = dataset.to_dict()
    pair = any(b is not None for b in columns["text_b"])
    return encode(tokenizer, columns["text_a"], columns["text_b"] if pair else None, columns["label"], max_length)


class Classification(TaskKind):
    """One label per example or pair: cross-entropy, and KL between the temperature-softened class distributions."""

    min_eval_examples = 1
    takes_transfer = True
    baseline = "majority class"

    def load(self, task, data_dir, tokenizer, max_length, max_train_examples, seed, with_train, max_eval_examples,
             stride, split_by_article, data=None, cache_dir=None):
        if task.from_data:
            return self._load_user_files(task, data, tokenizer, seed, with_train, cache_dir)
        splits = (("train",) if with_train else ()) + task.dev_splits
        raw = {split: load_glue_split(task, split, data_dir) for split in splits}
        if data_dir is None:  # the hub's own content fingerprint stands in for a file hash
            hashes = {f"hub:{task.hub_name}/{s}": raw[s]._fingerprint for s in splits}
        else:
            hashes = {str(path): sha256_file(path) for path in (glue_split_path(task, s, data_dir) for s in splits)}
        train = None
        if with_train:
            train = _encode_split(raw["train"], tokenizer, max_length, subsample(len(raw["train"]), max_train_examples, seed))
        dev = {split: _encode_split(raw[split], tokenizer, max_length, subsample(len(raw[split]), max_eval_examples, seed))
               for split in task.dev_splits}
        for split, encoded in dev.items():
            if len(encoded) < self.min_eval_examples:
                where = glue_split_path(task, split, data_dir) if data_dir else f"the hub's {task.name} {split} split"
                raise BequestError(f"{where} gives {len(encoded)} scored pair(s) to evaluate on: {', '.join(task.metrics)} "
                                   f"need at least {self.min_eval_examples} (raise data.max_eval_examples, or use the whole dev file)")
        return TaskData(task=task, train=train, dev=dev, file_hashes=hashes)

    def resolve(self, spec, data, seed, cache_dir=None):
        return user_task(spec, data, seed, cache_dir)[0]

    def _load_user_files(self, task, data, tokenizer, seed, with_train, cache_dir):
        _, tables = user_task(task, data, seed, cache_dir)
        hashes = source_hashes(data)
        train = None
        if with_train:
            train = encode_table(tables["train"], data, task, tokenizer, subsample(len(tables["train"]), data.max_train_examples, seed))
        scored = {split: encode_table(tables[split], data, task, tokenizer,
                                      subsample(len(tables[split]), data.max_eval_examples, seed))
                  for split in ("validation", "test") if split in tables}
        for split, encoded in scored.items():
            if len(encoded) < self.min_eval_examples:
                raise BequestError(f"the {split} data gives {len(encoded)} example(s): {', '.join(task.metrics)} need at "
                                   f"least {self.min_eval_examples} (give data.{split} with more rows"
                                   + (", or raise data.validation_fraction)" if split == "validation" else ")"))
        return TaskData(task=task, train=train, dev={"validation": scored["validation"]}, file_hashes=hashes,
                        test=scored.get("test"))

    def transfer_set(self, task, labelled, data, tokenizer, seed, teacher, source):
        pair = data.text_pair_column is not None if task.from_data else takes_pairs(task)
        return with_transfer(labelled, data, pair, tokenizer, seed, teacher, source)

    def metrics(self, task, data, logits, qa):
        return compute_metrics(task, logits, np.asarray(data.labels))

    def baseline_scores(self, task, train, data, qa):
        counts = np.bincount(np.asarray(train.labels, dtype=np.int64), minlength=task.num_labels)
        return self.metrics(task, data, np.tile(np.eye(task.num_labels)[counts.argmax()], (len(data), 1)), qa)

    def describe(self, task):
        return f"student for {task.name}" if task.from_data else f"student for GLUE {task.name.upper()}"

    def loss(self, logits, labels, mask=None):
        return F.cross_entropy(logits, labels)

    def soft_loss(self, student, teacher, temperature, mask=None):
        return kl(student, teacher, temperature)


class Regression(Classification):
    """A score per example or pair (STS-B): MSE to the label, and MSE to the teacher's score as the soft target."""

    has_classes = False
    min_eval_examples = 2  # a correlation of one pair is undefined
    pipeline_example = ('pipeline("text-classification", model=folder, function_to_apply="none")'
                        '("a charming and affecting journey")  # the score')

    baseline = "mean score"

    def baseline_scores(self, task, train, data, qa):
        """A constant (the training labels' mean) correlates with nothing: scored 0, where scipy says undefined."""
        return {name: 0.0 for name in task.metrics}

    def decode(self, task, data, logits, labels, qa):
        return [{"score": float(row[0])} for row in np.asarray(logits)]

    def loss(self, logits, labels, mask=None):
        return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))

    def soft_loss(self, student, teacher, temperature, mask=None):
        return F.mse_loss(student, teacher.to(student.dtype))


CLASSIFICATION = TASK_KINDS.register("classification", Classification(), description=Classification.__doc__)
REGRESSION = TASK_KINDS.register("regression", Regression(), description=Regression.__doc__)
