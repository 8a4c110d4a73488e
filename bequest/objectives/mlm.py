"""Masked-language modelling on the student (DistilBERT's third loss), through the architecture's MLM head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from transformers import AutoModelForMaskedLM, PretrainedConfig

from bequest.errors import BequestError
from bequest.models.loading import load_pretrained
from bequest.objectives.base import ObjectiveConfig, Term, objective


class MLMObjective(ObjectiveConfig):
    """Masked-language modelling on the student, through an MLM head added to it and tied to its embeddings.

    Inputs are masked BERT-style (of `probability` of the real tokens: 80% [MASK], 10% random, 10% kept)
    before both student and teacher see them, as DistilBERT trains."""

    probability: float = Field(0.15, gt=0, lt=1, description="fraction of real tokens masked")


@objective("mlm", "masked-language modelling on the student")
class MLM(Term):
    """Masked-language modelling through the architecture's own MLM head, its decoder tied to the
    student's word embeddings. The head trains with the student and stays out of the export."""

    Config = MLMObjective
    hidden = True
    transforms_inputs = True  # student and teacher both see the masked text

    def __init__(self, head: nn.Module, decoder: nn.Linear, probability: float, mask_id: int, special_ids: list[int]):
        super().__init__()
        self.head, self._decoder = head, (decoder,)  # the decoder lives inside head; a tuple keeps it registered once
        self.probability, self.mask_id, self.vocab_size = probability, mask_id, decoder.out_features
        self.special_ids = special_ids
        self.labels = None  # this step's: the masked tokens' ids, -100 elsewhere

    @classmethod
    def build(cls, spec, ctx, where):
        if ctx.tokenizer is None or ctx.tokenizer.mask_token_id is None:
            raise BequestError(f"{where}: the tokenizer has no mask token: mlm needs one")
        head, decoder, _ = mlm_head(ctx.student, ctx.teacher, ctx.teacher_source)
        return cls(head, decoder, spec.probability, ctx.tokenizer.mask_token_id, ctx.tokenizer.all_special_ids)

    def attach(self, student: nn.Module) -> None:
        self._decoder[0].weight = student.get_input_embeddings().weight

    def mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """BERT masking of real, non-special tokens; returns the masked ids and labels (-100 where not masked)."""
        candidates = attention_mask.bool() & ~torch.isin(input_ids, torch.tensor(self.special_ids, device=input_ids.device))
        chosen = candidates & (torch.rand(input_ids.shape, device=input_ids.device) < self.probability)
        labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
        draw = torch.rand(input_ids.shape, device=input_ids.device)
        masked = torch.where(chosen & (draw < 0.8), torch.full_like(input_ids, self.mask_id), input_ids)
        random_ids = torch.randint(self.vocab_size, input_ids.shape, device=input_ids.device)
        return torch.where(chosen & (draw >= 0.8) & (draw < 0.9), random_ids, masked), labels

    def transform(self, inputs):
        masked_ids, self.labels = self.mask(inputs["input_ids"], inputs["attention_mask"])
        return {**inputs, "input_ids": masked_ids}

    def forward(self, student, teacher, labels):
        masked = self.labels != -100  # the head runs on masked positions only: a vocabulary-wide matmul saved on 85% of tokens
        return F.cross_entropy(self.head(student.hidden[-1][masked]), self.labels[masked])


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
