"""Token classification (NER and other tagging): a tag per word, learned and scored on each word's
first sub-word (the others are ignored unless `data.label_all_tokens`).

Logits are (batch, tokens, tags); KD compares the teacher's and the student's tag distributions at
the labelled positions only, and the metrics are seqeval's entity-level precision, recall and F1
(strict IOB2) plus the accuracy over labelled tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModelForTokenClassification

from bequest.data.conll import tagged_split
from bequest.data.features import Encoded, subsample
from bequest.data.user_files import check_seen, source_hashes
from bequest.errors import BequestError
from bequest.kinds.base import TASK_KINDS, TaskData, TaskKind, kl

IGNORED = -100  # a position no loss or metric reads


class TokenFeatures(Encoded):
    """A tagged split: one label per token (IGNORED on special tokens and later sub-words)."""

    def label_tensor(self, labels: list, longest: int) -> torch.Tensor:
        return torch.tensor([row + [IGNORED] * (longest - len(row)) for row in labels])


@dataclass
class WordFeatures(TokenFeatures):
    """New sentences to tag: their words, and each token's word (None on special tokens)."""

    words: list[list[str]] = field(default_factory=list)
    word_ids: list[list[int | None]] = field(default_factory=list)


def entities(words: list[str], tags: list[str], scores: list[float]) -> list[dict]:
    """Entity spans of tagged words: a B- tag, or an I- tag of another type than the word before, starts one
    (as transformers' "simple" aggregation reads IOB2); its score is the mean of its words'."""
    found, current = [], None
    for i, (tag, score) in enumerate(zip(tags, scores)):
        kind = tag[2:] if tag[:2] in ("B-", "I-") else None
        if kind is not None and (tag.startswith("B-") or current is None or current["entity"] != kind):
            current = {"entity": kind, "words": [i, i + 1], "scores": [score]}
            found.append(current)
        elif kind is not None:
            current["words"][1], current["scores"] = i + 1, [*current["scores"], score]
        else:
            current = None
    return [{"entity": e["entity"], "text": " ".join(words[e["words"][0]: e["words"][1]]), "words": e["words"],
             "score": float(np.mean(e["scores"]))} for e in found]


def encode_words(tokenizer, sentences: list[list[str]], tags: list[list[str]], index: dict[str, int], max_length: int,
                 label_all_tokens: bool) -> TokenFeatures:
    if not getattr(tokenizer, "is_fast", False):
        raise BequestError("token-classification needs a fast tokenizer (one that maps sub-words to words)")
    tokens = tokenizer(sentences, is_split_into_words=True, truncation=True, max_length=max_length)
    labels = []
    for row, words in enumerate(tags):
        previous, labelled = None, []
        for word in tokens.word_ids(row):
            first = word is not None and word != previous
            labelled.append(index[words[word]] if word is not None and (first or label_all_tokens) else IGNORED)
            previous = word
        labels.append(labelled)
    inputs = {name: tokens[name] for name in tokenizer.model_input_names if name in tokens}
    return TokenFeatures(inputs=inputs, labels=labels)


class TokenClassification(TaskKind):
    """A tag per word (NER): cross-entropy and KD over each word's first sub-word; entity F1 (seqeval, IOB2)."""

    auto_class = AutoModelForTokenClassification
    has_classes = False  # no class per example: PTP has nothing to build from
    pipeline_tag = "token-classification"
    pipeline_example = ('pipeline("token-classification", model=folder, aggregation_strategy="simple")'
                        '("George Washington went to Washington.")')

    input_columns = ("text",)  # words separated by white space

    def prediction_inputs(self, task, columns, tokenizer, max_length, qa):
        if not getattr(tokenizer, "is_fast", False):
            raise BequestError("token-classification needs a fast tokenizer (one that maps sub-words to words)")
        words = [str(text).split() for text in columns["text"]]
        tokens = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)
        inputs = {name: tokens[name] for name in tokenizer.model_input_names if name in tokens}
        word_ids = [tokens.word_ids(row) for row in range(len(words))]
        return WordFeatures(inputs, [[IGNORED] * len(ids) for ids in word_ids], words=words, word_ids=word_ids)

    def decode(self, task, data, logits, labels, qa):
        rows = []
        for row, (words, ids) in enumerate(zip(data.words, data.word_ids)):
            probabilities = torch.softmax(torch.from_numpy(np.asarray(logits[row, : len(ids)], dtype=np.float64)), -1).numpy()
            first = {}
            for position, word in enumerate(ids):
                if word is not None and word not in first:
                    first[word] = position
            tags = [labels[int(probabilities[first[w]].argmax())] for w in sorted(first)]  # words cut at max_length: none
            scores = [float(probabilities[first[w]].max()) for w in sorted(first)]
            rows.append({"entities": entities(words, tags, scores), "tags": tags})
        return rows

    def resolve(self, spec, data, seed, cache_dir=None):
        _, tags = tagged_split(data.train, data.train_split, data, "train", cache_dir)
        names = sorted({tag for row in tags for tag in row})
        return replace(spec, label_names=tuple(names), metrics=("f1", "precision", "recall", "accuracy"), main_metric="f1",
                       dev_splits=("validation",))

    def load(self, task, data_dir, tokenizer, max_length, max_train_examples, seed, with_train, max_eval_examples,
             stride, split_by_article, data=None, cache_dir=None):
        sentences, tags = tagged_split(data.train, data.train_split, data, "train", cache_dir)
        if data.validation:
            dev_sentences, dev_tags = tagged_split(data.validation, data.validation_split, data, "validation", cache_dir)
        else:  # a seeded share of the training sentences
            order = np.random.default_rng(seed).permutation(len(sentences))
            held = set(order[: int(round(data.validation_fraction * len(sentences)))].tolist())
            dev_sentences, dev_tags = [sentences[i] for i in sorted(held)], [tags[i] for i in sorted(held)]
            kept = [i for i in range(len(sentences)) if i not in held]
            sentences, tags = [sentences[i] for i in kept], [tags[i] for i in kept]
        index = {name: i for i, name in enumerate(task.label_names)}
        scored = {"validation": (dev_sentences, dev_tags)}
        if data.test:
            scored["test"] = tagged_split(data.test, data.test_split, data, "test", cache_dir)
        for split, (_, split_tags) in scored.items():
            check_seen([tag for row in split_tags for tag in row], task.label_names, f"data.{split}", "tag")
        train = None
        if with_train:
            keep = subsample(len(sentences), max_train_examples, seed)
            train = encode_words(tokenizer, [sentences[i] for i in keep], [tags[i] for i in keep], index, max_length,
                                 data.label_all_tokens)
        encoded = {}
        for split, (split_sentences, split_tags) in scored.items():
            keep = subsample(len(split_sentences), max_eval_examples, seed)
            encoded[split] = encode_words(tokenizer, [split_sentences[i] for i in keep], [split_tags[i] for i in keep],
                                          index, max_length, False)
        hashes = source_hashes(data)
        return TaskData(task=task, train=train, dev={"validation": encoded["validation"]}, file_hashes=hashes,
                        test=encoded.get("test"))

    def metrics(self, task, data, logits, qa):
        from seqeval.metrics import f1_score, precision_score, recall_score
        from seqeval.scheme import IOB2

        predicted = np.asarray(logits).argmax(-1)
        gold_tags, predicted_tags = [], []
        for row, labels in enumerate(data.labels):
            chosen = [i for i, label in enumerate(labels) if label != IGNORED]
            gold_tags.append([task.label_names[labels[i]] for i in chosen])
            predicted_tags.append([task.label_names[predicted[row, i]] for i in chosen])
        tokens = sum(len(row) for row in gold_tags)
        right = sum(g == p for gold, pred in zip(gold_tags, predicted_tags) for g, p in zip(gold, pred))
        options = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
        return {"f1": float(f1_score(gold_tags, predicted_tags, **options)),
                "precision": float(precision_score(gold_tags, predicted_tags, **options)),
                "recall": float(recall_score(gold_tags, predicted_tags, **options)),
                "accuracy": right / tokens if tokens else 0.0}

    def describe(self, task):
        return f"token-classification student ({len(task.label_names)} tags)"

    def loss(self, logits, labels, mask=None):
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORED)

    def soft_loss(self, student, teacher, temperature, mask=None):
        teacher = teacher[:, : student.shape[1]]  # cached ones are padded to the longest example
        real = mask[:, : student.shape[1]].bool() if mask is not None else torch.ones(student.shape[:2], dtype=torch.bool)
        return kl(student[real], teacher[real], temperature)

    def kd_loss(self, student, teacher, labels, alpha, temperature, mask=None, labelled=None):
        """(1 - alpha) * task loss + alpha * KL over the tagged positions (each word's first sub-word); every
        example is labelled (`labelled` is None: the kind takes no transfer set)."""
        tagged = labels != IGNORED
        soft = kl(student[tagged], teacher[:, : student.shape[1]][tagged], temperature)
        return (1 - alpha) * self.loss(student, labels) + alpha * soft


TOKEN_CLASSIFICATION = TASK_KINDS.register("token_classification", TokenClassification(),
                                           description=TokenClassification.__doc__)
