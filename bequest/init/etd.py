"""ETD from a recipe: the target shape, the scorer's inputs (batches and the loss), the extraction.

The Taylor scorer needs the training loss of the teacher itself: on a task, its task loss on
training batches; on a corpus, masked-language modelling through the teacher checkpoint's MLM
head, or, when the checkpoint has none (as the default teacher), through a head first fitted
to the frozen teacher for `extract.head_steps` steps.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn
from tqdm.auto import tqdm

from bequest.data.features import model_inputs
from bequest.errors import BequestError
from bequest.init.base import Initialiser, Start, initialiser
from bequest.init.extract import Selection, extract, ffn_size, head_size, shares_heads
from bequest.init.importance import SCORERS, Scores, choose
from bequest.init.layers import LAYER_SELECTION, select_layers
from bequest.models.arch import ffn_attribute
from bequest.models.capture import run_captured
from bequest.objectives.mlm import MLM, mlm_head
from bequest.section import Section


class ExtractConfig(Section):
    """ETD: cut the student out of the teacher in width as well as depth (`init` picks the layers).

    The student keeps the teacher's head size, so hidden_size fixes the head count."""

    hidden_size: int | None = Field(None, ge=1, description="default: the teacher's")
    num_attention_heads: int | None = Field(None, ge=1, description="implied by hidden_size / the teacher's head size; give it to check")
    intermediate_size: int | None = Field(None, ge=1, description="FFN neurons kept; default: the teacher's, scaled like the hidden size")
    scorer: str = Field("taylor", description="which units survive: random (ETD-Rand), magnitude, or taylor (ETD-Impt)")
    batches: int = Field(16, ge=1, description="taylor: training batches whose loss gradients score the units")
    batch_size: int = Field(32, ge=1, description="taylor: examples per scoring batch")
    head_steps: int = Field(100, ge=0, description="taylor on a corpus when the teacher has no MLM head: steps fitting one to it first")


def target_shape(config, spec: ExtractConfig) -> tuple[int, int, int]:
    """(hidden size, heads, FFN size) of the extracted student, checked against the teacher."""
    size, width, ffn = head_size(config), config.hidden_size, ffn_size(config)
    hidden = spec.hidden_size or width
    if hidden > width or hidden % size:
        raise BequestError(f"extract.hidden_size {hidden}: the student keeps the teacher's head size {size}, so choose "
                           f"a multiple of {size} up to the teacher's {width}")
    heads = hidden // size
    if spec.num_attention_heads is not None and spec.num_attention_heads != heads:
        raise BequestError(f"extract.num_attention_heads {spec.num_attention_heads}: with the teacher's head size {size}, "
                           f"hidden size {hidden} has {heads} heads; set hidden_size {spec.num_attention_heads * size} for "
                           f"{spec.num_attention_heads} heads")
    neurons = spec.intermediate_size or round(ffn * hidden / width)
    if neurons > ffn:
        raise BequestError(f"extract.intermediate_size {neurons}: the teacher has only {ffn} FFN neurons per layer")
    return hidden, heads, neurons


def check_extract(spec: ExtractConfig, teacher: nn.Module, tokenizer, on_task: bool) -> None:
    if spec.scorer not in SCORERS:
        raise BequestError(f"extract.scorer '{spec.scorer}' is unknown: use one of {', '.join(SCORERS.names())}")
    target_shape(teacher.config, spec)
    if spec.scorer == "taylor" and not on_task and tokenizer.mask_token_id is None:
        raise BequestError("extract.scorer taylor on a corpus scores by masked-language modelling, and the tokenizer "
                           "has no mask token: use scorer magnitude or random")


def _mlm_loss(teacher: nn.Module, source: str, tokenizer, batches: list[dict], steps: int):
    """The teacher's MLM loss, through its checkpoint's head or one fitted to it (encoder frozen)."""
    head, decoder, pretrained = mlm_head(teacher.config, teacher.config, source)
    term = MLM(head, decoder, 0.15, tokenizer.mask_token_id, tokenizer.all_special_ids)
    term.attach(teacher)

    def loss(model: nn.Module, batch: dict) -> torch.Tensor:
        captured = run_captured(model, term.transform(model_inputs(batch)), hidden=True, attention=False)
        return term(captured, None, None)

    if not pretrained and steps:
        embeddings = teacher.get_input_embeddings().weight
        optimizer = torch.optim.AdamW([p for p in term.parameters() if p is not embeddings], lr=1e-3)
        frozen = [p for p in teacher.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            for step in tqdm(range(steps), desc="fitting an MLM head to the teacher", unit="step", leave=False,
                             dynamic_ncols=True):
                loss(teacher, batches[step % len(batches)]).backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        finally:
            for p in frozen:
                p.requires_grad_(True)
    return loss


def extract_student(teacher: nn.Module, layers: list[int], spec: ExtractConfig, data, task_kind, pad_token_id: int,
                    seed: int, tokenizer=None, teacher_source: str | None = None) -> tuple[nn.Module, Selection, Scores]:
    """Score the teacher's units, keep the best at the target shape from `layers`, and cut the student out.

    `data` is the run's training data: a task's labelled examples or a corpus's segments (`task_kind`
    None); Taylor batches are drawn from it."""
    on_task = task_kind is not None
    hidden, heads, neurons = target_shape(teacher.config, spec)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if spec.scorer == "taylor":
            order = data.training_batches(spec.batch_size, seed, 0, group_by_length=False)
            count = max(spec.batches, spec.head_steps if not on_task else 0)
            batches = [data.batch(b, pad_token_id) for b in order[:count]]
            if on_task:
                loss_fn = task_kind.batch_loss
            else:
                loss_fn = _mlm_loss(teacher, teacher_source, tokenizer, batches, spec.head_steps)
            scores = SCORERS["taylor"].implementation(teacher, batches=batches[: spec.batches], loss_fn=loss_fn, seed=seed)
        else:
            scores = SCORERS[spec.scorer].implementation(teacher, seed=seed)
    selection = choose(scores, layers, hidden, heads, neurons, shares_heads(teacher))
    return extract(teacher, selection), selection, scores


@initialiser("extract", "ETD: also narrow the student, keeping the teacher units a scorer ranks highest", ExtractConfig)
class ETDExtraction(Initialiser):
    """Cuts the student out of the teacher at the layers `init` picks and the width `extract` gives."""

    builds = True

    def validate(self, spec, student):
        if "wid" in student.initialisers():
            raise ValueError("extract (ETD) and wid narrow the student in two different ways: choose one")
        if student.init == "random":
            raise ValueError("extract starts from the teacher's weights: choose init lower, upper, uniform, stride or a layer list")

    def check(self, spec, ctx):
        LAYER_SELECTION.check(ctx.student, ctx)
        check_extract(spec, ctx.teacher, ctx.tokenizer, ctx.task is not None)

    def shape(self, spec, config, ctx):
        config = LAYER_SELECTION.shape(ctx.student, config, ctx)
        config.hidden_size, config.num_attention_heads, neurons = target_shape(ctx.teacher.config, spec)
        setattr(config, ffn_attribute(config.model_type), neurons)
        return config

    def build(self, spec, ctx, start):
        student = ctx.student
        chosen = select_layers(student.init, student.layers, ctx.teacher.config.num_hidden_layers)
        model, selection, scores = extract_student(ctx.teacher, chosen, spec, ctx.train, ctx.task.kind if ctx.task else None,
                                                   ctx.pad_token_id, ctx.seed, ctx.tokenizer, ctx.teacher_source)
        extraction = {"scorer": spec.scorer, "kept": selection.to_json(), "scores": scores.to_json()}
        return Start(model, chosen, f"{LAYER_SELECTION.describe(student)} + ETD width extraction ({spec.scorer})",
                     {"extraction": extraction})
