"""Sentence embeddings: an encoder, its pooling and normalisation (a sentence-transformers model), distilled
on unlabelled sentences against the teacher's embeddings and scored as MTEB scores STS: Spearman's
correlation (x 100) between the cosine similarity of each pair's embeddings and its gold score.

The model's "logits" are its sentence embeddings (`bequest.models.sentence`), so predictions, the
teacher-output cache and latency need nothing of their own. There are no labels: the objectives are
the embedding losses (`bequest.objectives.embedding`) and the intermediate ones; the teacher is used
as it is, never fine-tuned.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from bequest.data.features import (
    Encoded,
    encode,
    model_inputs,
    subsample,
    training_batches,
)
from bequest.data.sentences import scored_pairs, training_texts
from bequest.data.user_files import HUB, source_hashes
from bequest.errors import BequestError
from bequest.io import sha256_file
from bequest.kinds.base import TASK_KINDS, TaskData, TaskKind
from bequest.models.sentence import SentenceEncoder

DEFAULT_PAIRS = "hub:sentence-transformers/stsb"  # STS-B dev when neither data.validation nor data.dir names it
IMPORTANCE_TEMPERATURE = 0.05  # of the instance-discrimination loss ETD's Taylor scores are taken on


class SentencePairs(Encoded):
    """Scored pairs as one split of single sentences: every pair's first text, then every pair's second text
    (row i and row i + n are pair i); each pair's gold score is the label of both its rows."""

    @property
    def pairs(self) -> int:
        return len(self) // 2


class TrainingPairs(SentencePairs):
    """Pairs to train on (data.text_pair_column), laid out as SentencePairs, each row's label its pair's number.
    A batch holds both texts of every pair it holds, first texts then second texts (so under DDP every process
    keeps whole pairs when the batch's pairs divide evenly), for `embedding_pairs` to contrast them."""

    holds_pairs = True

    def training_batches(self, batch_size: int, seed: int, epoch: int, group_by_length: bool) -> list[list[int]]:
        lengths, pairs = self.lengths, self.pairs
        longer = [max(lengths[i], lengths[i + pairs]) for i in range(pairs)]
        chosen = training_batches(longer, max(1, batch_size // 2), seed, epoch, group_by_length)
        return [[*batch, *(i + pairs for i in batch)] for batch in chosen]

    def select(self, indices) -> TrainingPairs:
        """The pairs whose first text is among the chosen rows (about as many rows as chosen, pairs kept whole)."""
        kept = [i for i in indices if i < self.pairs]
        return super().select([*kept, *(i + self.pairs for i in kept)])


def encode_pairs(tokenizer, first: list[str], second: list[str], labels: list, max_length: int,
                 split: type[SentencePairs] = SentencePairs) -> SentencePairs:
    encoded = encode(tokenizer, [*first, *second], None, [*labels, *labels], max_length)
    return split(encoded.inputs, encoded.labels)


def cosine_scores(embeddings: np.ndarray, pairs: int) -> np.ndarray:
    first, second = torch.from_numpy(embeddings[:pairs]), torch.from_numpy(embeddings[pairs:])
    return F.cosine_similarity(first.double(), second.double(), dim=-1).numpy()


class SentenceEmbedding(TaskKind):
    """Sentence embeddings: pooled (and normalised) encoder outputs, distilled on raw sentences, scored on STS."""

    auto_class = SentenceEncoder
    has_classes = False
    labelled = False  # no labels: kd and task have nothing to read
    embeds = True
    trains_teacher = False
    default_objectives = {"embedding_mse": {}}
    pipeline_tag = "sentence-similarity"
    pipeline_example = 'SentenceTransformer(folder).encode(["a charming and affecting journey"])'
    library_name = "sentence-transformers"
    example_import = "from sentence_transformers import SentenceTransformer"
    model_class = "AutoModel"  # the top folder is a plain encoder too (token vectors, before pooling)

    def teacher_options(self, config) -> dict:
        if config.teacher.finetune.when == "always":
            raise BequestError("teacher.finetune.when: a sentence-embedding teacher is used as it is (there are no "
                               "labels to fine-tune it on): drop teacher.finetune.when")
        settings = config.embedding
        return {"pooling": settings.pooling, "normalize": settings.normalize, "max_length": config.data.max_length,
                "match_teacher_dim": settings.match_teacher_dim}

    def load(self, task, data_dir, tokenizer, max_length, max_train_examples, seed, with_train, max_eval_examples,
             stride, split_by_article, data=None, cache_dir=None):
        train = None
        if with_train:
            first, second = training_texts(data, cache_dir)
            keep = subsample(len(first), max_train_examples, seed)  # sentences, or pairs
            if second is None:
                train = encode(tokenizer, [first[i] for i in keep], None, [0.0] * len(keep), max_length)
            else:
                train = encode_pairs(tokenizer, [first[i] for i in keep], [second[i] for i in keep], list(range(len(keep))),
                                     max_length, TrainingPairs)
        validation = data.validation or (f"{data_dir}/STS-B/dev.tsv" if data_dir else DEFAULT_PAIRS)
        read = {"validation": (validation, data.validation_columns, data.validation_split)}
        if data.test:
            read["test"] = (data.test, data.test_columns or data.validation_columns, data.test_split)
        scored = {}
        for split, (source, columns, hub_split) in read.items():
            first, second, scores = scored_pairs(source, columns, hub_split, data, split, cache_dir)
            keep = subsample(len(scores), max_eval_examples, seed)
            scored[split] = encode_pairs(tokenizer, [first[i] for i in keep], [second[i] for i in keep],
                                         [scores[i] for i in keep], max_length)
        hashes = source_hashes(data)
        if not data.validation and not validation.startswith(HUB):  # STS-B dev from data.dir: recorded as any file
            hashes[validation] = sha256_file(validation)
        return TaskData(task, train, {"validation": scored["validation"]}, hashes, scored.get("test"))

    def metrics(self, task, data, logits, qa):
        from scipy.stats import pearsonr, spearmanr

        similarity = cosine_scores(np.asarray(logits, dtype=np.float64), data.pairs)
        gold = np.asarray(data.labels[: data.pairs], dtype=np.float64)
        return {"spearman": float(spearmanr(similarity, gold).statistic * 100),
                "pearson": float(pearsonr(similarity, gold).statistic * 100)}

    input_columns = ("text",)

    def decode(self, task, data, logits, labels, qa):
        return [{"embedding": [float(x) for x in row]} for row in np.asarray(logits)]

    def describe(self, task):
        return "sentence-embedding student"

    def batch_loss(self, model, batch):
        """Instance discrimination over the batch (each sentence its own positive among the others): the loss ETD's
        Taylor importance is taken on, as the embedding loss against the teacher is 0 for the teacher itself."""
        embeddings = F.normalize(model(**model_inputs(batch)).logits, dim=-1)
        similarity = embeddings @ embeddings.T / IMPORTANCE_TEMPERATURE
        return F.cross_entropy(similarity, torch.arange(len(similarity), device=similarity.device))


SENTENCE_EMBEDDING = TASK_KINDS.register("sentence_embedding", SentenceEmbedding(), description=SentenceEmbedding.__doc__)
