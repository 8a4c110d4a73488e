"""Extractive question answering (SQuAD v1.1/v2.0): an answer span in the context.

A QA head gives (batch, tokens, 2) start and end scores, each a distribution over the sequence's
real tokens, reshaped to (2 * batch, tokens) rows with padding masked out, so the same
cross-entropy and KL apply and average the start and end losses as BERT's SQuAD loss does.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from transformers import AutoModelForQuestionAnswering

from bequest.data.features import subsample
from bequest.data.squad import (
    encode_squad,
    load_squad_data,
    split_by_article,
    user_squad_rows,
)
from bequest.data.tasks import QA_TASKS
from bequest.data.user_files import source_hashes
from bequest.data_config import QAConfig
from bequest.eval.squad import best_answers, squad_metrics
from bequest.kinds.base import TASK_KINDS, TaskData, TaskKind, kl
from bequest.models.outputs import PADDING_LOGIT


def _rows(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """QA logits (B, T, 2) -> (2B, T) rows [start of 0, end of 0, start of 1, ...], padding masked out."""
    if mask is not None:
        logits = logits.masked_fill(~mask[:, : logits.shape[1], None].bool(), PADDING_LOGIT)
    return logits.transpose(1, 2).reshape(-1, logits.shape[1])


class ExtractiveQA(TaskKind):
    """An answer span in the context (SQuAD): start and end distributions over the tokens."""

    auto_class = AutoModelForQuestionAnswering
    has_classes = False
    pipeline_tag = "question-answering"
    pipeline_example = None  # transformers 5 has no question-answering pipeline: the card shows the model class

    def resolve(self, spec, data, seed, cache_dir=None):
        rows = user_squad_rows(data.train, data.train_split, data, "train", cache_dir)
        unanswerable = any(not row["answers"]["text"] for row in rows)  # then scored as SQuAD v2.0 is
        return replace(spec, metrics=QA_TASKS["squad_v2" if unanswerable else "squad"].metrics, unanswerable=unanswerable)

    def load(self, task, data_dir, tokenizer, max_length, max_train_examples, seed, with_train, max_eval_examples,
             stride, split_by_article, data=None, cache_dir=None):
        if task.from_data:
            return self._load_user_files(task, data, tokenizer, max_length, stride, seed, with_train, cache_dir)
        train, dev, hashes = load_squad_data(task, data_dir, tokenizer, max_length, stride, max_train_examples,
                                             max_eval_examples, split_by_article, seed, with_train)
        return TaskData(task=task, train=train, dev={"dev": dev}, file_hashes=hashes)

    def _load_user_files(self, task, data, tokenizer, max_length, stride, seed, with_train, cache_dir):
        """SQuAD-format files under the generic keys; without data.validation, a seeded share of train's articles."""
        rows = {"train": user_squad_rows(data.train, data.train_split, data, "train", cache_dir)}
        if data.validation:
            rows["validation"] = user_squad_rows(data.validation, data.validation_split, data, "validation", cache_dir)
        else:
            rows["train"], rows["validation"] = split_by_article(rows["train"], data.validation_fraction, seed)
        if data.test:
            rows["test"] = user_squad_rows(data.test, data.test_split, data, "test", cache_dir)
        limits = {"train": data.max_train_examples, "validation": data.max_eval_examples, "test": data.max_eval_examples}
        encoded = {split: encode_squad(tokenizer, [part[i] for i in subsample(len(part), limits[split], seed)], max_length,
                                       stride)
                   for split, part in rows.items() if split != "train" or with_train}
        hashes = source_hashes(data)
        return TaskData(task=task, train=encoded.get("train"), dev={"validation": encoded["validation"]},
                        file_hashes=hashes, test=encoded.get("test"))

    def metrics(self, task, data, logits, qa):
        qa = qa or QAConfig()  # the recipe's answer-reading defaults
        answers = best_answers(data, logits, qa.n_best, qa.max_answer_length, task.unanswerable, qa.null_threshold)
        return squad_metrics(answers, data.examples, task.unanswerable)

    input_columns = ("question", "context")

    def prediction_inputs(self, task, columns, tokenizer, max_length, qa):
        rows = [{"id": str(i), "question": str(question), "context": str(context), "answers": {"text": [], "answer_start": []}}
                for i, (question, context) in enumerate(zip(columns["question"], columns["context"]))]
        return encode_squad(tokenizer, rows, max_length, qa.stride)

    def decode(self, task, data, logits, labels, qa):
        answers = best_answers(data, logits, qa.n_best, qa.max_answer_length, task.unanswerable, qa.null_threshold)
        return [{"answer": answers[example["id"]]} for example in data.examples]

    def scoring_settings(self, config) -> dict:
        return {"qa": config.qa.model_dump(), "split_by_article": config.data.split_by_article}

    def describe(self, task):
        return f"extractive QA student for {task.name}"

    def loss(self, logits, labels, mask=None):
        return F.cross_entropy(_rows(logits, mask), labels.reshape(-1))

    def soft_loss(self, student, teacher, temperature, mask=None):
        teacher = teacher[:, : student.shape[1]]  # cached ones are padded to the longest feature
        return kl(_rows(student, mask), _rows(teacher, mask), temperature)


EXTRACTIVE_QA = TASK_KINDS.register("extractive_qa", ExtractiveQA(), description=ExtractiveQA.__doc__)
