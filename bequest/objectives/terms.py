"""Objectives as small modules over captured tensors; a stage's loss is their weighted sum.

Each term says what it reads (`hidden`, `attention`: the Q/K/V projections), so a forward pass
captures only what some term needs. Terms with learned parts (width projections) are modules
whose parameters train with the student and are saved in its checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForMaskedLM, PretrainedConfig

from bequest.data.kinds import CLASSIFICATION, TaskKind
from bequest.data.tasks import get_task
from bequest.errors import BequestError
from bequest.models.capture import Captured
from bequest.models.loading import load_pretrained
from bequest.objectives import losses
from bequest.objectives.mapping import layer_pairs
from bequest.registry import Registry


class Term(nn.Module):
    hidden = False  # reads hidden states
    attention = False  # reads Q/K/V (and the scores built from them)
    teacher_pass = False  # needs the teacher's internals, not only its cached logits

    def forward(self, student: Captured, teacher: Captured, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def teacher_reads(self) -> set[tuple[str, int]]:
        """The teacher tensors this term reads, as (hidden | queries | keys | values, layer)."""
        return set()


class Task(Term):
    def __init__(self, kind: TaskKind):
        super().__init__()
        self.kind = kind

    def forward(self, student, teacher, labels):
        return self.kind.loss(student.logits, labels, student.mask)


class LogitKD(Term):
    def __init__(self, alpha: float, temperature: float, kind: TaskKind):
        super().__init__()
        self.alpha, self.temperature, self.kind = alpha, temperature, kind

    def forward(self, student, teacher, labels):
        return self.kind.kd_loss(student.logits, teacher.logits, labels, self.alpha, self.temperature, student.mask)


class _Projected(Term):
    """Maps student states to the teacher's width with learned linear maps when the widths differ."""

    hidden = teacher_pass = True

    def __init__(self, pairs, student_width: int, teacher_width: int, projection: str):
        super().__init__()
        self.pairs = pairs
        count = 0 if student_width == teacher_width else (1 if projection == "shared" else len(pairs))
        self.projections = nn.ModuleList(nn.Linear(student_width, teacher_width) for _ in range(count))

    def teacher_reads(self):
        return {("hidden", t) for _, t in self.pairs}

    def project(self, position: int, states: torch.Tensor) -> torch.Tensor:
        if not self.projections:
            return states
        return self.projections[position if len(self.projections) > 1 else 0](states)


class Hidden(_Projected):
    def __init__(self, pairs, student_width, teacher_width, projection, loss):
        super().__init__(pairs, student_width, teacher_width, projection)
        self.loss = losses.hidden_cosine if loss == "cosine" else losses.hidden_mse

    def forward(self, student, teacher, labels):
        return sum(self.loss(self.project(n, student.hidden[s]), teacher.hidden[t], student.mask)
                   for n, (s, t) in enumerate(self.pairs))


class PKD(_Projected):
    def forward(self, student, teacher, labels):
        return sum(losses.pkd(self.project(n, student.hidden[s][:, 0]), teacher.hidden[t][:, 0])
                   for n, (s, t) in enumerate(self.pairs))


PTP_THRESHOLDS = {"rte": (0.8, 0.6), "mrpc": (0.95, 0.75), "sst2": (0.98, 0.8), "qnli": (0.98, 0.7), "cola": (0.95, 0.7)}


def ptp_labels(teacher_logits: torch.Tensor, labels: torch.Tensor, t1: float, t2: float) -> torch.Tensor:
    """Pea-KD's four classes: 0 right and confidence > t1, 1 right and <= t1, 2 wrong and > t2, 3 wrong and <= t2."""
    confidence, predicted = F.softmax(teacher_logits.float(), dim=-1).max(-1)
    right = predicted == labels
    return torch.where(right, (confidence <= t1).long(), 2 + (confidence <= t2).long())


def ptp_thresholds(teacher_logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Our rule for tasks the paper gives no thresholds for: the median confidence of the teacher's
    right predictions (t1) and of its wrong ones (t2), so each pair of classes splits in half."""
    confidence, predicted = F.softmax(teacher_logits.float(), dim=-1).max(-1)
    right = predicted == labels
    t1 = confidence[right].median().item() if right.any() else 0.5
    t2 = confidence[~right].median().item() if (~right).any() else t1
    return t1, t2


class PTP(Term):
    """PTP: a 4-way head of its own on the student's last [CLS] state learns the teacher's
    ptp_labels; a first stage, whose head is dropped when the stage ends."""

    hidden = True

    def __init__(self, width: int, thresholds: tuple[float, float] | None):
        super().__init__()
        self.head = nn.Linear(width, 4)
        self.thresholds = thresholds  # None until fitted on the training set's teacher logits

    def forward(self, student, teacher, labels):
        return F.cross_entropy(self.head(student.hidden[-1][:, 0]), ptp_labels(teacher.logits, labels, *self.thresholds))


class _LayerTerm(Term):
    attention = teacher_pass = True
    slots = ("queries", "keys")  # what attention scores are built from

    def __init__(self, pairs):
        super().__init__()
        self.pairs = pairs

    def teacher_reads(self):
        return {(slot, t) for _, t in self.pairs for slot in self.slots}


class AttentionMSE(_LayerTerm):
    def forward(self, student, teacher, labels):
        return sum(losses.attention_mse(student.scores(s), teacher.scores(t), student.mask) for s, t in self.pairs)


class AttentionKL(_LayerTerm):
    def forward(self, student, teacher, labels):
        return sum(losses.distribution_kl(F.log_softmax(student.scores(s), -1), F.log_softmax(teacher.scores(t), -1), student.mask)
                   for s, t in self.pairs)


RELATION_SLOTS = {"qq": "queries", "kk": "keys", "vv": "values"}


class Relations(_LayerTerm):
    """Self-relations of Q, K and/or V split into `heads` relation heads (MiniLM value relation, MiniLMv2)."""

    def __init__(self, pairs, relations, student_heads: int, teacher_heads: int):
        super().__init__(pairs)
        self.relations, self.student_heads, self.teacher_heads = relations, student_heads, teacher_heads
        self.slots = tuple(RELATION_SLOTS[relation] for relation in relations)

    def forward(self, student, teacher, labels):
        total = 0.0
        for s, t in self.pairs:
            for relation in self.relations:
                slot = RELATION_SLOTS[relation]
                log_s = losses.relation_log_probs(getattr(student, slot)[s], self.student_heads, student.mask)
                log_t = losses.relation_log_probs(getattr(teacher, slot)[t], self.teacher_heads, teacher.mask)
                total = total + losses.distribution_kl(log_s, log_t, student.mask)
        return total


class MLM(Term):
    """Masked-language modelling through the architecture's own MLM head, its decoder tied to the
    student's word embeddings. The head trains with the student and stays out of the export."""

    hidden = True

    def __init__(self, head: nn.Module, decoder: nn.Linear, probability: float, mask_id: int, special_ids: list[int]):
        super().__init__()
        self.head, self._decoder = head, (decoder,)  # the decoder lives inside head; a tuple keeps it registered once
        self.probability, self.mask_id, self.vocab_size = probability, mask_id, decoder.out_features
        self.special_ids = special_ids

    def tie(self, embeddings: nn.Embedding) -> None:
        self._decoder[0].weight = embeddings.weight

    def mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """BERT masking of real, non-special tokens; returns the masked ids and labels (-100 where not masked)."""
        candidates = attention_mask.bool() & ~torch.isin(input_ids, torch.tensor(self.special_ids, device=input_ids.device))
        chosen = candidates & (torch.rand(input_ids.shape, device=input_ids.device) < self.probability)
        labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
        draw = torch.rand(input_ids.shape, device=input_ids.device)
        masked = torch.where(chosen & (draw < 0.8), torch.full_like(input_ids, self.mask_id), input_ids)
        random_ids = torch.randint(self.vocab_size, input_ids.shape, device=input_ids.device)
        return torch.where(chosen & (draw >= 0.8) & (draw < 0.9), random_ids, masked), labels

    def forward(self, student, teacher, labels):
        masked = student.mlm_labels != -100  # the head runs on masked positions only: a vocabulary-wide matmul saved on 85% of tokens
        return F.cross_entropy(self.head(student.hidden[-1][masked]), student.mlm_labels[masked])


def mlm_head(student: PretrainedConfig, teacher: PretrainedConfig, source: str | None) -> tuple[nn.Module, nn.Linear, bool]:
    """The architecture's MLM head: the teacher checkpoint's own where it has one of the student's width,
    else a new one. Returns the head, its decoder, and whether trained head weights were found."""
    missing = None
    if source is not None and student.hidden_size == teacher.hidden_size:
        model, info = load_pretrained(AutoModelForMaskedLM, source)
        missing = info["missing_keys"]
    else:
        model = AutoModelForMaskedLM.from_config(student)
    heads = [(name, child) for name, child in model.named_children() if name != model.base_model_prefix]
    if len(heads) != 1:
        raise BequestError(f"mlm: the MLM head of {student.model_type} is not one module; mlm does not support it yet")
    name, head = heads[0]
    decoder = model.get_output_embeddings()
    # the decoder weight is tied to the embeddings, so a checkpoint may legitimately lack it
    pretrained = missing is not None and not any(key.startswith(name + ".") and not key.endswith("decoder.weight") for key in missing)
    return head, decoder, pretrained


OBJECTIVES = Registry("objective", "objective builders")


@dataclass
class BuildContext:
    """What an objective's builder may read: both configs, the tokenizer, the teacher's source, the task."""

    student: PretrainedConfig
    teacher: PretrainedConfig
    tokenizer: object
    teacher_source: str | None
    task: str | None
    kind: TaskKind  # the logits' kind says how they are compared

    def pairs(self, spec, default, space: str, where: str) -> list[tuple[int, int]]:
        return layer_pairs(spec.mapping or default, self.student.num_hidden_layers, self.teacher.num_hidden_layers, space, where)

    def same_heads(self, where: str) -> None:
        s_heads, t_heads = self.student.num_attention_heads, self.teacher.num_attention_heads
        if s_heads != t_heads:
            raise BequestError(f"{where} compares attention heads one to one, but the student has {s_heads} heads and the "
                               f"teacher {t_heads}: use minilmv2, whose relation heads need not match")


def objective(name: str, description: str):
    """Register `builder(spec, context, where) -> Term` as the objective `name` (a key of a stage's objectives)."""
    return OBJECTIVES.register(name, description=description)


@objective("task", "the task loss of the task kind")
def _task(spec, ctx, where):
    return Task(ctx.kind)


@objective("kd", "logit KD through the task kind's soft-target loss")
def _kd(spec, ctx, where):
    return LogitKD(spec.alpha, spec.temperature, ctx.kind)


@objective("hidden", "hidden states through a width projection")
def _hidden(spec, ctx, where):
    return Hidden(ctx.pairs(spec, "uniform", "hidden", where), ctx.student.hidden_size, ctx.teacher.hidden_size,
                  spec.projection, spec.loss)


def _pkd_default(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """PKD-skip: intermediate layers only; the last layer is the logit KD's job."""
    pairs = layer_pairs("uniform", student_layers, teacher_layers, "hidden")[1:-1]
    if not pairs:
        raise BequestError("pkd: a 1-layer student has no intermediate layer to map: give pkd.mapping, e.g. [[1, 6]]")
    return pairs


@objective("pkd", "normalised [CLS] states of mapped layers")
def _pkd(spec, ctx, where):
    s_layers, t_layers = ctx.student.num_hidden_layers, ctx.teacher.num_hidden_layers
    chosen = layer_pairs(spec.mapping, s_layers, t_layers, "hidden", where) if spec.mapping else _pkd_default(s_layers, t_layers)
    return PKD(chosen, ctx.student.hidden_size, ctx.teacher.hidden_size, spec.projection)


@objective("attention_mse", "pre-softmax attention scores, MSE")
def _attention_mse(spec, ctx, where):
    ctx.same_heads(where)
    return AttentionMSE(ctx.pairs(spec, "uniform", "layer", where))


@objective("attention_kl", "attention distributions, KL")
def _attention_kl(spec, ctx, where):
    ctx.same_heads(where)
    return AttentionKL(ctx.pairs(spec, "uniform", "layer", where))


@objective("value_relation", "MiniLM value relation, KL")
def _value_relation(spec, ctx, where):
    ctx.same_heads(where)
    return Relations(ctx.pairs(spec, "last", "layer", where), ["vv"], ctx.student.num_attention_heads,
                     ctx.teacher.num_attention_heads)


@objective("minilmv2", "MiniLMv2 Q-Q, K-K, V-V relations in relation heads, KL")
def _minilmv2(spec, ctx, where):
    heads = spec.relation_heads or ctx.teacher.num_attention_heads
    for who, width in (("student", ctx.student.hidden_size), ("teacher", ctx.teacher.hidden_size)):
        if width % heads:
            raise BequestError(f"{where}: {heads} relation heads do not divide the {who}'s width {width}: "
                               "choose minilmv2.relation_heads that divides both widths")
    return Relations(ctx.pairs(spec, "last", "layer", where), spec.relations, heads, heads)


@objective("mlm", "masked-language modelling through the architecture's MLM head")
def _mlm(spec, ctx, where):
    if ctx.tokenizer is None or ctx.tokenizer.mask_token_id is None:
        raise BequestError(f"{where}: the tokenizer has no mask token: mlm needs one")
    head, decoder, _ = mlm_head(ctx.student, ctx.teacher, ctx.teacher_source)
    return MLM(head, decoder, spec.probability, ctx.tokenizer.mask_token_id, ctx.tokenizer.all_special_ids)


@objective("ptp", "Pea-KD's PTP: 4 classes from the teacher's predictions")
def _ptp(spec, ctx, where):
    if ctx.student.num_labels == 1 or not ctx.kind.has_classes:
        raise BequestError(f"{where} builds its classes from the teacher's class predictions; a regression "
                           "or question-answering task has none: use kd or pkd")
    defaults = PTP_THRESHOLDS.get(ctx.task, (None, None))
    t1, t2 = spec.t1 or defaults[0], spec.t2 or defaults[1]
    return PTP(ctx.student.hidden_size, (t1, t2) if t1 and t2 else None)


def build_terms(objectives, student: PretrainedConfig, teacher: PretrainedConfig,
                tokenizer=None, teacher_source: str | None = None, task: str | None = None) -> dict[str, tuple[float, Term]]:
    """Turn a stage's objectives into weighted terms through their registered builders, checking every
    layer and shape they need.

    `tokenizer` gives the mask and special tokens to the mlm term, `teacher_source` (the teacher's
    folder or hub id) the trained MLM head it starts from where the checkpoint has one, `task`
    the task kind and the ptp term its thresholds."""
    ctx = BuildContext(student, teacher, tokenizer, teacher_source, task, get_task(task).kind if task else CLASSIFICATION)
    return {name: (spec.weight, OBJECTIVES[name].implementation(spec, ctx, f"objective {name}"))
            for name, spec in objectives.active().items()}
