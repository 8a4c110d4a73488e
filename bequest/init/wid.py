"""WID: weight-inherited distillation (Wu et al., 2024).

The student is the teacher itself (at the depth the spine's layer selection chose) in which
every linear of the transformer layers computes (R W L) x + R b: R, the output-side compactor,
and L, the input-side one, are square and start as the identity; the embeddings share one
compactor C (each looked-up embedding e becomes C e). `Compacting` runs the Hugging Face model on
these effective weights (`torch.func.functional_call`), so whatever reads an HF model - the
objectives' captures, heads, the training loop - reads the wrapped one unchanged.

Every parameter axis is labelled with its space by the ETD extractor (the hidden dimensions
shared by the residual stream; one layer's attention dimensions; one layer's FFN neurons), and
each space has a mask of kept channels. Every `w_step` steps, 16 times, more channels are
marked, those whose compactor rows (R, C) and columns (L) have the smallest summed squared
norm; a marked channel stays marked. The attention schedule sets the hidden one (every HF
encoder's attention is as wide as its hidden size), so the model can be merged at any step.

Marked rows and columns, and the entries of marked channels in every tensor without a
compactor (biases, LayerNorms, the pooler and the task head), get no task gradient; instead, after each step they are multiplied by (1 - compactor_learning_rate *
l2_lambda), a decoupled pull to zero (the released code adds the pull to Adam's momentum,
which moves a weight by about the same lr * lambda per step). LayerNorms compute their
statistics over kept dimensions only. In evaluation mode the masks are applied exactly
(marked channels are zero), which is the model `merge()` returns as an ordinary dense model:
W' = R W L, b' = R b, E' = E C^T, then every axis sliced at the kept channels.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field
from torch import nn
from torch.func import functional_call

from bequest.callbacks import Callback
from bequest.data.features import inference_batches, model_inputs
from bequest.errors import BequestError
from bequest.init.base import Initialiser, Start, initialiser
from bequest.init.extract import (
    Axis,
    Selection,
    axis_labels,
    extract,
    ffn_size,
    head_size,
    shares_heads,
)
from bequest.io import write_text
from bequest.models.loading import layer_list
from bequest.models.outputs import output_logits
from bequest.section import Section

UPDATES = 16  # mask updates until the target shape, as in the paper


class WIDConfig(Section):
    """WID: the student is the teacher itself (at the chosen depth) with every linear wrapped in
    left and right compactors; the compactors learn which rows and columns to drop, and the
    model is merged into a dense one of the target shape when training ends."""

    hidden_size: int = Field(..., ge=1, description="target hidden size (the attention is as wide, as in every HF encoder)")
    intermediate_size: int | None = Field(None, ge=1, description="target FFN size; default: the teacher's, scaled like the hidden size")
    strategy: Literal["dim", "head"] = Field("dim", description="dim: every head keeps fewer dimensions; head: fewer whole heads")
    w_step: int = Field(50, ge=1, description="steps between mask updates; the target shape is reached after 16 updates")
    l2_lambda: float = Field(400.0, ge=0, description="pull on marked rows and columns: multiplied by "
                             "1 - compactor_learning_rate * l2_lambda after every step (0.98 by default)")
    compactor_learning_rate: float = Field(5e-5, gt=0, description="the compactors' own learning rate, the paper's "
                                           "(train.learning_rate is the inherited weights'); 1e-3 wrecks the model")


def wid_shape(config, spec: WIDConfig) -> tuple[int, int, int]:
    """(hidden size, heads, FFN size) of the merged student, checked against the teacher."""
    width, heads, size, ffn = config.hidden_size, config.num_attention_heads, head_size(config), ffn_size(config)
    hidden = spec.hidden_size
    if hidden > width:
        raise BequestError(f"wid.hidden_size {hidden} is larger than the teacher's {width}")
    if spec.strategy == "head":
        if hidden % size:
            raise BequestError(f"wid.hidden_size {hidden}: strategy head keeps whole heads of the teacher's size {size}, "
                               f"so choose a multiple of {size} (or strategy dim)")
        target_heads = hidden // size
    else:
        if hidden % heads:
            raise BequestError(f"wid.hidden_size {hidden}: strategy dim keeps all {heads} heads, each narrower, "
                               f"so choose a multiple of {heads} (or strategy head)")
        target_heads = heads
    neurons = spec.intermediate_size or round(ffn * hidden / width)
    if neurons > ffn:
        raise BequestError(f"wid.intermediate_size {neurons}: the teacher has only {ffn} FFN neurons per layer")
    return hidden, target_heads, neurons


def _mark(kept: torch.Tensor, scores: torch.Tensor, marked: int) -> torch.Tensor:
    """`kept` with the lowest-scoring kept channels marked until `marked` are; marks never lift."""
    kept = kept.clone()
    need = marked - int((~kept).sum())
    if need > 0:
        candidates = kept.nonzero().squeeze(1)
        kept[candidates[scores[candidates].argsort()[:need]]] = False
    return kept


class Compacting(nn.Module):
    """An HF model wrapped in compactors: called like the model; `merge()` gives the dense student."""

    def __init__(self, model: nn.Module, spec: WIDConfig, mask_log: Path | None = None):
        super().__init__()
        self.model = model
        self.spec = spec
        self.mask_log = mask_log
        config = model.config
        self.target = wid_shape(config, spec)
        self.labels = axis_labels(model)
        prefix, layers = layer_list(model)
        self.depth, self.heads, self.head_size = len(layers), config.num_attention_heads, head_size(config)
        self.shared_heads = shares_heads(model)

        self.compactors = nn.ParameterDict()
        self.linears: dict[str, tuple[str, str]] = {}  # linear module -> (output-side key, input-side key)
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear) and name.startswith(prefix + "."):
                keys = (name.replace(".", "_") + "_R", name.replace(".", "_") + "_L")
                for key, size in zip(keys, module.weight.shape):
                    self.compactors[key] = nn.Parameter(torch.eye(size))
                self.linears[name] = keys
        hidden = Axis("hidden")
        self.embeddings = [name for name, module in model.named_modules() if isinstance(module, nn.Embedding)
                           and self.labels[name + ".weight"][1] == hidden]
        if self.embeddings:
            self.compactors["embeddings"] = nn.Parameter(torch.eye(config.hidden_size))

        # (parameter of self, dimension, space): the channels of each space, in every tensor that holds them
        self.uses: list[tuple[str, int, Axis]] = []
        for name, (out_key, in_key) in self.linears.items():
            out_axis, in_axis = self.labels[name + ".weight"]
            self.uses += [(f"compactors.{out_key}", 0, out_axis), (f"compactors.{in_key}", 1, in_axis)]
        if self.embeddings:
            self.uses.append(("compactors.embeddings", 0, hidden))
        carried = {name + ".weight" for name in [*self.linears, *self.embeddings]}  # their compactors hold the channels
        self.uses += [(f"model.{name}", dim, axis) for name, axes in self.labels.items() if name not in carried
                      for dim, axis in enumerate(axes) if axis is not None and axis.space != "heads"]

        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("kept_hidden", torch.ones(config.hidden_size, dtype=torch.bool))
        self.register_buffer("kept_attention", torch.ones(self.depth, config.hidden_size, dtype=torch.bool))
        self.register_buffer("kept_ffn", torch.ones(self.depth, ffn_size(config), dtype=torch.bool))

        params = dict(self.named_parameters())
        for name, dim, axis in self.uses:  # marked channels get no task gradient
            params[name].register_hook(lambda grad, dim=dim, axis=axis: self._without_marked(grad, dim, axis))
        for name, module in model.named_modules():
            if isinstance(module, nn.LayerNorm) and self.labels.get(name + ".weight") == (hidden,):
                module.register_forward_hook(self._layer_norm_over_kept)
            if name in self.embeddings:
                module.register_forward_hook(self._compact_embedding)

    @property
    def config(self):
        return self.model.config

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def kept(self, axis: Axis | None) -> torch.Tensor | None:
        if axis is None or axis.space == "heads":
            return None
        if axis.space == "hidden":
            return self.kept_hidden
        return (self.kept_attention if axis.space == "attention" else self.kept_ffn)[axis.layer]

    def marked(self, axis: Axis) -> torch.Tensor:
        return (~self.kept(axis)).nonzero().squeeze(1)

    def _without_marked(self, grad: torch.Tensor, dim: int, axis: Axis) -> torch.Tensor | None:
        marked = self.marked(axis)
        return grad.index_fill(dim, marked, 0) if len(marked) else None

    def _keep(self, axis: Axis, dim: int, ndim: int, dtype) -> torch.Tensor:
        shape = [1] * ndim
        shape[dim] = -1
        return self.kept(axis).view(shape).to(dtype)

    def effective(self, hard: bool) -> dict[str, torch.Tensor]:
        """The HF model's parameters as the wrapped model computes with them; `hard`: marked channels zeroed."""
        params = {}
        for name, param in self.model.named_parameters():
            module, kind = name.rsplit(".", 1)
            tensor = param
            if module in self.linears:
                out_key, in_key = self.linears[module]
                right = self.compactors[out_key]
                tensor = right @ tensor @ self.compactors[in_key] if kind == "weight" else right @ tensor
            elif module in self.embeddings:  # compacted after the lookup (`_compact_embedding`), a vocabulary-sized product saved
                params[name] = tensor
                continue
            if hard:
                for dim, axis in enumerate(self.labels[name]):
                    if self.kept(axis) is not None:
                        tensor = tensor * self._keep(axis, dim, tensor.ndim, tensor.dtype)
            params[name] = tensor
        return params

    def embedding_compactor(self, hard: bool) -> torch.Tensor:
        compactor = self.compactors["embeddings"]
        return compactor * self.kept_hidden[:, None] if hard else compactor

    def _compact_embedding(self, module: nn.Embedding, inputs, output):
        return output @ self.embedding_compactor(hard=not self.training).T.to(output.dtype)

    def _layer_norm_over_kept(self, module: nn.LayerNorm, inputs, output):
        if bool(self.kept_hidden.all()):
            return None
        x = inputs[0].float()
        kept = x[..., self.kept_hidden]
        mean, var = kept.mean(-1, keepdim=True), kept.var(-1, unbiased=False, keepdim=True)
        return ((x - mean) * torch.rsqrt(var + module.eps) * module.weight + module.bias).to(output.dtype)

    def parameter_settings(self) -> list[tuple[nn.Parameter, dict]]:
        """The compactors' own optimiser settings (the paper's learning rate, no weight decay)."""
        return [(param, {"lr": self.spec.compactor_learning_rate, "weight_decay": 0.0}) for param in self.compactors.values()]

    def forward(self, *args, **kwargs):
        return functional_call(self.model, self.effective(hard=not self.training), args, kwargs)

    @torch.no_grad()
    def advance(self) -> None:
        """One optimiser step's bookkeeping, before its forward passes: the mask update when one is due, then the pull."""
        step = int(self.step)
        if step and step % self.spec.w_step == 0 and step // self.spec.w_step <= UPDATES:
            self.update_masks(step // self.spec.w_step)
        shrink = max(0.0, 1.0 - self.spec.compactor_learning_rate * self.spec.l2_lambda)
        params = dict(self.named_parameters())
        for name, dim, axis in self.uses:
            marked = self.marked(axis)
            if len(marked):
                param = params[name]
                param.index_copy_(dim, marked, param.index_select(dim, marked) * shrink)
        self.step += 1

    def channel_scores(self) -> dict[str, torch.Tensor]:
        """Summed squared norms of each channel's compactor rows and columns, per space ('hidden', 'attention', 'ffn')."""
        scores = {"hidden": torch.zeros_like(self.kept_hidden, dtype=torch.float),
                  "attention": torch.zeros_like(self.kept_attention, dtype=torch.float),
                  "ffn": torch.zeros_like(self.kept_ffn, dtype=torch.float)}
        params = dict(self.named_parameters())
        for name, dim, axis in self.uses:
            if name.startswith("compactors."):
                squared = params[name].detach().float().pow(2).sum(1 - dim)
                (scores["hidden"] if axis.space == "hidden" else scores[axis.space][axis.layer]).add_(squared)
        return scores

    @torch.no_grad()
    def update_masks(self, update: int) -> None:
        """Mark channels up to `update`/16 of the way from the teacher's shape to the target."""
        hidden, heads, neurons = self.target
        fraction = min(update, UPDATES) / UPDATES
        scores = self.channel_scores()
        size = self.head_size
        by_head = scores["attention"].view(self.depth, self.heads, size)
        kept = self.kept_attention.view(self.depth, self.heads, size).clone()
        if self.spec.strategy == "dim":
            per_head = round(fraction * (size - hidden // heads))
            for layer in range(self.depth):
                for head in range(self.heads):
                    kept[layer, head] = _mark(kept[layer, head], by_head[layer, head], per_head)
            hidden_marked = per_head * self.heads
        else:
            whole = round(fraction * (self.heads - heads))
            head_scores = by_head.sum(-1)
            if self.shared_heads:  # one position bias for all layers: every layer keeps the same heads
                head_scores = head_scores.sum(0, keepdim=True).expand_as(head_scores)
            for layer in range(self.depth):
                kept[layer] = _mark(kept[layer].all(-1), head_scores[layer], whole)[:, None].expand(-1, size)
            hidden_marked = whole * size
        self.kept_attention.copy_(kept.view(self.depth, -1))
        self.kept_hidden.copy_(_mark(self.kept_hidden, scores["hidden"], hidden_marked))
        total = self.kept_ffn.shape[1]
        for layer in range(self.depth):
            self.kept_ffn[layer] = _mark(self.kept_ffn[layer], scores["ffn"][layer], round(fraction * (total - neurons)))
        if self.mask_log is not None:  # every update, so any checkpoint's masks can be traced
            # a resumed run repeats the updates after its checkpoint: those lines are replaced, not added again
            lines = self.mask_log.read_text().splitlines() if self.mask_log.is_file() else []
            earlier = [line for line in lines if json.loads(line)["update"] < update]
            entry = json.dumps({"step": int(self.step), "update": update, **self.selection().to_json()})
            write_text(self.mask_log, "".join(line + "\n" for line in [*earlier, entry]))

    def selection(self) -> Selection:
        """The kept channels, as the ETD extractor slices them."""
        as_list = lambda mask: mask.nonzero().squeeze(1).tolist()  # noqa: E731
        heads = [as_list(self.kept_attention[layer].view(self.heads, -1).any(-1)) for layer in range(self.depth)]
        attention = [as_list(self.kept_attention[layer]) for layer in range(self.depth)]
        return Selection(list(range(self.depth)), as_list(self.kept_hidden), heads,
                         [as_list(self.kept_ffn[layer]) for layer in range(self.depth)],
                         attention if self.spec.strategy == "dim" else None)

    @torch.no_grad()
    def merge(self) -> nn.Module:
        """The dense model of the kept shape that computes what the wrapped model computes in evaluation mode."""
        effective = self.effective(hard=True)
        for name in self.embeddings:
            effective[name + ".weight"] = effective[name + ".weight"] @ self.embedding_compactor(hard=True).T
        dense = type(self.model)(self.model.config)  # the same architecture, without the wrapper's hooks
        dense.load_state_dict({**self.model.state_dict(), **effective})
        if any(len(heads) == 0 for heads in self.selection().heads):
            raise BequestError("a layer lost all its attention heads: merge a checkpoint from later in the schedule")
        return extract(dense, self.selection())


class MaskSchedule(Callback):
    """Advances the compactors' schedule once per optimiser step (however many forward passes it takes)."""

    def __init__(self, model: Compacting):
        self.model = model

    def on_step_begin(self, state) -> None:
        self.model.advance()


@torch.no_grad()
def merge_error(wrapped: Compacting, merged: nn.Module, data, batch_size: int, pad_token_id: int) -> float:
    """Max |difference| between the merged model's outputs (logits, else last hidden states at the
    kept dimensions) and the wrapped model's with its masks applied, on the longest batch of `data`."""
    device = next(merged.parameters()).device
    inputs = model_inputs(data.batch(inference_batches(data.lengths, batch_size)[0], pad_token_id))
    inputs = {k: v.to(device) for k, v in inputs.items()}
    before, after = wrapped.eval()(**inputs), merged.eval()(**inputs)
    if output_logits(before) is not None:
        before, after = output_logits(before).float(), output_logits(after).float()
        if before.shape != after.shape:  # a sentence embedding narrowed with the model: its kept dimensions
            before = before[..., wrapped.kept_hidden]
        return (before - after).abs().max().item()
    return (before.last_hidden_state[..., wrapped.kept_hidden].float() - after.last_hidden_state.float()).abs().max().item()


@initialiser("wid", "WID: also narrow the student by training compactors on the teacher's weights, then merging", WIDConfig)
class WeightInherited(Initialiser):
    """Wraps the student built before it in compactors; merges it to the target width after training."""

    def validate(self, spec, student):
        if student.init == "random":
            raise ValueError("wid starts from the teacher's weights: choose init lower, upper, uniform, stride or a layer list")

    def check(self, spec, ctx):
        wid_shape(ctx.teacher.config, spec)
        axis_labels(ctx.teacher)  # refuses architectures whose parameters we cannot label

    def check_schedule(self, spec, student, examples):
        steps = 0
        for stage in student.all_stages():
            size = min(examples, stage.data.max_examples or examples)
            per_epoch = math.ceil(size / stage.train.batch_size)
            steps += stage.train.max_steps or stage.train.planned_epochs(per_epoch) * per_epoch
        needed = UPDATES * spec.w_step
        if steps < needed:
            fix = (f"set wid.w_step to at most {steps // UPDATES}, or train longer" if steps >= UPDATES else
                   f"train for at least {UPDATES} steps (more epochs, a smaller batch_size or max_steps)")
            return (f"WID reaches its target shape after 16 mask updates of wid.w_step={spec.w_step} steps ({needed} steps), "
                    f"but the student trains for {steps}: {fix}")
        return None

    def build(self, spec, ctx, start):
        log = ctx.log_dir / f"{ctx.student.name}.wid_masks.jsonl" if ctx.log_dir is not None else None
        model = Compacting(start.model, spec, mask_log=log)
        description = f"{start.description} + WID compactors ({spec.strategy}-wise, to hidden {spec.hidden_size})"
        return Start(model, start.layers_from, description, start.logs)

    def callbacks(self, spec, model):
        return [MaskSchedule(model)]

    def finalise(self, spec, model, ctx):
        merged = model.merge()
        error = merge_error(model, merged, ctx.sample, ctx.eval_batch_size, ctx.pad_token_id)
        ctx.say(f"compactors merged into a dense model of hidden size {merged.config.hidden_size} "
                f"(largest output difference from the wrapped model on a batch: {error:.2g})")
        return merged, {"wid_merge_error": error}
