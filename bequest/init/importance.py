"""Importance scorers for ETD extraction: which heads, FFN neurons and hidden dimensions to keep.

A scorer returns `Scores` (higher = keep). `SCORERS` is the registry the recipe's
`extract.scorer` names:
- `random` (ETD-Rand): seeded uniform scores;
- `magnitude`: the L2 norm of every weight that reads or writes the unit;
- `taylor` (ETD-Impt, the default): first-order Taylor importance from gradients of the training
  loss on a few batches, as DynaBERT computes it: a head's score is |dL/dm| for a mask m on its
  output (taken by a hook, as the models no longer accept head masks), an FFN neuron's is
  |sum w*grad| over its input row, plus that of its bias and of its output column (each
  parameter's sum made absolute on its own); all summed over batches. The paper's own formula
  is not public.
  Hidden dimensions are our choice: |sum w*grad| over each parameter's slice of the dimension,
  summed over all parameters that read or write it (embeddings, LayerNorms, every projection).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from bequest.init.extract import (
    Axis,
    Selection,
    axis_labels,
    ffn_size,
    head_size,
)
from bequest.models.arch import for_layer
from bequest.models.loading import layer_list
from bequest.registry import Registry


@dataclass
class Scores:
    hidden: torch.Tensor  # (hidden,)
    heads: list[torch.Tensor]  # per teacher layer, (heads,)
    ffn: list[torch.Tensor]  # per teacher layer, (ffn,)

    def to_json(self) -> dict:
        return {"hidden": self.hidden.tolist(), "heads": [h.tolist() for h in self.heads], "ffn": [f.tolist() for f in self.ffn]}


def _empty(model: nn.Module) -> Scores:
    config = model.config
    layers = config.num_hidden_layers
    return Scores(torch.zeros(config.hidden_size, dtype=torch.float64),
                  [torch.zeros(config.num_attention_heads, dtype=torch.float64) for _ in range(layers)],
                  [torch.zeros(ffn_size(config), dtype=torch.float64) for _ in range(layers)])


def _add_per_unit(scores: Scores, labels: dict[str, tuple[Axis | None, ...]], values: dict[str, torch.Tensor],
                  absolute: bool, spaces: tuple[str, ...], heads_of: int) -> None:
    """For each parameter and each labelled axis, sum `values` over the other axes and add the
    result (made absolute if asked) to the units of that axis's space."""
    for name, tensor in values.items():
        for dim, axis in enumerate(labels[name]):
            if axis is None or axis.space not in spaces:
                continue
            per_unit = tensor.double().sum(dim=[d for d in range(tensor.ndim) if d != dim]) if tensor.ndim > 1 else tensor.double()
            if axis.space == "attention":
                per_unit = per_unit.view(-1, heads_of).sum(-1)  # dimensions -> their heads
            per_unit = per_unit.abs() if absolute else per_unit
            if axis.space == "hidden":
                scores.hidden += per_unit
            elif axis.space == "attention":
                scores.heads[axis.layer] += per_unit
            elif axis.space == "ffn":
                scores.ffn[axis.layer] += per_unit


def random_scores(model: nn.Module, *, seed: int, **_) -> Scores:
    generator = torch.Generator().manual_seed(seed)
    scores = _empty(model)
    for tensor in [scores.hidden, *scores.heads, *scores.ffn]:
        tensor.copy_(torch.rand(tensor.shape, generator=generator, dtype=torch.float64))
    return scores


def magnitude_scores(model: nn.Module, **_) -> Scores:
    scores = _empty(model)
    squares = {name: p.detach() ** 2 for name, p in model.named_parameters()}
    _add_per_unit(scores, axis_labels(model), squares, False, ("hidden", "attention", "ffn"), head_size(model.config))
    for tensor in [scores.hidden, *scores.heads, *scores.ffn]:
        tensor.sqrt_()
    return scores


def taylor_scores(model: nn.Module, *, batches: Iterable[dict], loss_fn: Callable[[nn.Module, dict], torch.Tensor], **_) -> Scores:
    """`loss_fn(model, batch)` is the training loss; the model is put in eval mode (no dropout)."""
    scores = _empty(model)
    labels = axis_labels(model)
    size = head_size(model.config)
    _, layers = layer_list(model)
    was_training = model.training
    model.eval()
    head_grads = [None] * len(layers)

    def watch(index: int):
        def pre_hook(_module, args):
            context = args[0]
            if context.requires_grad:
                context.register_hook(lambda grad: head_grads.__setitem__(index, (context.detach() * grad).view(
                    *grad.shape[:-1], -1, size).sum(dim=(0, 1, 3)).double()))
        return pre_hook

    handles = []
    for index, layer in enumerate(layers):
        modules = dict(layer.named_modules())
        output = modules[for_layer(layer).attention_output]
        handles.append(output.register_forward_pre_hook(watch(index)))
    try:
        for batch in tqdm(batches, desc="scoring units (Taylor)", unit="batch", leave=False, dynamic_ncols=True):
            model.zero_grad(set_to_none=True)
            loss_fn(model, batch).backward()
            products = {name: p.detach() * p.grad for name, p in model.named_parameters() if p.grad is not None}
            _add_per_unit(scores, labels, products, True, ("hidden", "ffn"), size)
            for index, grads in enumerate(head_grads):
                scores.heads[index] += grads.abs()
    finally:
        for handle in handles:
            handle.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return scores


SCORERS = Registry("importance scorer", "importance scorers")
SCORERS.register("random", random_scores, description="ETD-Rand: seeded uniform scores")
SCORERS.register("magnitude", magnitude_scores, description="the L2 norm of every weight that reads or writes the unit")
SCORERS.register("taylor", taylor_scores, description="ETD-Impt: first-order Taylor importance from training-loss gradients")


def choose(scores: Scores, layers: list[int], hidden: int, heads: int, ffn: int, shared_heads: bool) -> Selection:
    """The top-scoring units at the target shape, kept in the teacher's order. Architectures with
    one position bias for all layers keep the same heads everywhere (scores summed over layers)."""

    def top(values: torch.Tensor, count: int) -> list[int]:
        return sorted(torch.topk(values, count).indices.tolist())

    if shared_heads:
        common = top(sum(scores.heads[t] for t in layers), heads)
        kept_heads = [common for _ in layers]
    else:
        kept_heads = [top(scores.heads[t], heads) for t in layers]
    return Selection(layers=list(layers), hidden=top(scores.hidden, hidden), heads=kept_heads,
                     ffn=[top(scores.ffn[t], ffn) for t in layers])
