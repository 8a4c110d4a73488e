"""Capturing an encoder's internals without editing or copying its code.

Hidden states come from the model itself (`output_hidden_states`). Queries, keys and values are
read by forward hooks on each layer's projection layers, and attention scores are rebuilt from
them: QK^T / sqrt(d_head) (+ the relative position bias where the architecture has one) + the
padding mask. This is exactly what the model's own attention computes before softmax and dropout,
so attention objectives see the pre-dropout distribution and the fast attention kernels stay on.
An architecture is supported when the table below names its projections.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from bequest.errors import BequestError
from bequest.models.arch import for_layer, position_bias
from bequest.models.loading import layer_list
from bequest.models.outputs import output_logits


@dataclass
class Captured:
    """What one forward pass exposed. Layer lists are indexed from 0 (first transformer layer);
    `hidden[0]` is the embedding output and `hidden[i]` the output of layer i-1."""

    mask: torch.Tensor
    num_heads: int
    logits: torch.Tensor | None = None
    hidden: tuple[torch.Tensor, ...] = ()
    queries: list[torch.Tensor] = field(default_factory=list)
    keys: list[torch.Tensor] = field(default_factory=list)
    values: list[torch.Tensor] = field(default_factory=list)
    position_bias: torch.Tensor | None = None
    labelled: torch.Tensor | None = None  # which examples carry a label (a transfer set's do not); None: all

    def key_mask(self, dtype: torch.dtype) -> torch.Tensor:
        """Additive mask (B, 1, 1, T): 0 for real tokens, the dtype's minimum for padding."""
        return (1.0 - self.mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min

    def scores(self, layer: int) -> torch.Tensor:
        """Pre-softmax attention scores of `layer`, (B, H, T, T), padded keys at the dtype's minimum."""
        q, k = split_heads(self.queries[layer], self.num_heads), split_heads(self.keys[layer], self.num_heads)
        scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
        if self.position_bias is not None:
            scores = scores + self.position_bias
        return scores + self.key_mask(scores.dtype)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, H*d) -> (B, H, T, d)."""
    batch, length, width = x.shape
    if width % heads:
        raise BequestError(f"cannot split a width of {width} into {heads} heads: choose a head count that divides it")
    return x.view(batch, length, heads, width // heads).transpose(1, 2)


def projections(model: nn.Module) -> list[tuple[nn.Module, nn.Module, nn.Module]]:
    """The (query, key, value) projection modules of every layer, found by name."""
    _, layers = layer_list(model)
    found = []
    for layer in layers:
        names = dict(layer.named_modules())
        family = for_layer(layer)
        if family is None:
            raise BequestError(
                f"attention objectives do not support {model.config.model_type} models yet "
                "(no entry of bequest.models.arch.ARCHITECTURES names their query/key/value projections)"
            )
        found.append(tuple(names[name] for name in family.projections))
    return found


@contextmanager
def capture(model: nn.Module, attention: bool):
    """Within the block, a forward pass fills the yielded dict with the layers' Q/K/V (if `attention`)."""
    store: dict[str, list] = {"queries": [], "keys": [], "values": [], "position_bias": []}
    handles = []
    if attention:
        for query, key, value in projections(model):
            for module, slot in ((query, "queries"), (key, "keys"), (value, "values")):
                handles.append(module.register_forward_hook(lambda _m, _i, out, slot=slot: store[slot].append(out)))
        bias_name = position_bias(model.config.model_type)
        if bias_name is not None:
            bias = next(m for name, m in model.named_modules() if name.endswith(bias_name))
            # the embedding returns (T, T, H); the model uses it as (1, H, T, T)
            handles.append(bias.register_forward_hook(
                lambda _m, _i, out: store["position_bias"].append(out.permute(2, 0, 1).unsqueeze(0))))
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


def run_captured(model: nn.Module, inputs: dict[str, torch.Tensor], hidden: bool, attention: bool) -> Captured:
    """Run `model` on `inputs` and return its logits (if it has a head) and the requested internals."""
    with capture(model, attention) as store:
        output = model(**inputs, output_hidden_states=hidden)
    return Captured(
        mask=inputs["attention_mask"],
        num_heads=model.config.num_attention_heads,
        logits=output_logits(output),
        hidden=tuple(output.hidden_states) if hidden else (),
        queries=store["queries"],
        keys=store["keys"],
        values=store["values"],
        position_bias=store["position_bias"][0] if store["position_bias"] else None,
    )
