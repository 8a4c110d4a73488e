"""Pea-KD's shuffled parameter sharing (SPS; Cho & Kang, 2020).

A student with N layers of parameters runs 2N layers: positions N..2N-1 are second passes of
layers 0..N-1, distinct modules (so captures, objectives and layer mappings see 2N layers) that
hold the very same Parameter objects, so the model has N layers' parameters and each parameter
gets the gradient of both of its uses.
- `paper`: the second pass of every layer uses the layer's Key projection as its Query and its
  Query as its Key, in training and evaluation.
- `stochastic` (the public code, `finetune_ER.py`): no fixed swap; at every odd training step
  each layer, with probability 1/2, swaps its Query and Key in both of its passes; never at even
  steps, never in evaluation.
The model stays an ordinary HF model of 2N layers whose state dict repeats the shared tensors,
so `unroll` gives a plain 2N-layer model, computing exactly what the shared one computes in
evaluation, that loads without bequest.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from bequest.callbacks import Callback
from bequest.errors import BequestError
from bequest.init.base import Initialiser, Start, initialiser
from bequest.models.arch import for_layer
from bequest.models.loading import count_parameters, layer_list
from bequest.section import Section


class SPSConfig(Section):
    """Pea-KD's shuffled parameter sharing: the student's layers run twice (2N layers, N layers' parameters)."""

    mode: Literal["paper", "stochastic"] = Field("paper", description="paper: the second pass swaps Query and Key; "
                                                 "stochastic: random per-layer swaps at odd training steps (the public code)")


STEP_BUFFER = "sps_step"  # training steps seen (stochastic mode swaps only at odd ones); not exported


def _query_key(layer: nn.Module) -> tuple[str, str]:
    family = for_layer(layer)
    if family is None:
        raise BequestError("shuffled parameter sharing does not know this architecture's query/key projections "
                           "(bequest.models.arch.ARCHITECTURES)")
    return family.query, family.key


def share_layers(student: nn.Module, mode: str) -> nn.Module:
    """A 2N-layer model running the N layers of `student` twice, with the same parameters."""
    config = copy.deepcopy(student.config)
    depth = config.num_hidden_layers
    config.num_hidden_layers = 2 * depth
    shared = type(student)(config)
    prefix, layers = layer_list(shared)
    shared.load_state_dict(student.state_dict(), strict=False)  # embeddings, heads, the first N layers
    query, key = _query_key(layers[0])
    swap = {query: key, key: query} if mode == "paper" else {}
    for index in range(depth):
        first, second = layers[index], layers[depth + index]
        modules = dict(second.named_modules())
        for name, param in first.named_parameters():
            module_name, leaf = name.rsplit(".", 1)
            target = swap.get(module_name, module_name)
            setattr(modules[target], leaf, param)
    if mode == "stochastic":
        _swap_at_random(shared, layers, depth, query, key)
    return shared


def _swap_at_random(model: nn.Module, layers: nn.ModuleList, depth: int, query: str, key: str) -> None:
    model.register_buffer(STEP_BUFFER, torch.zeros((), dtype=torch.long))
    model.sps_swapped = torch.zeros(depth, dtype=torch.bool)  # this step's draw (`draw_swaps`)
    for position, layer in enumerate(layers):
        modules = dict(layer.named_modules())
        for own, partner in ((query, key), (key, query)):
            other = modules[partner]
            modules[own].register_forward_hook(
                lambda m, inputs, output, other=other, physical=position % depth:
                F.linear(inputs[0], other.weight, other.bias)
                if m.training and model.sps_swapped[physical] else None)


def draw_swaps(model: nn.Module) -> None:
    """One optimiser step of the stochastic schedule: at odd steps each layer swaps with probability 1/2."""
    step = getattr(model, STEP_BUFFER)
    if int(step) % 2 == 1:
        model.sps_swapped.copy_(torch.rand(len(model.sps_swapped)) < 0.5)
    else:
        model.sps_swapped.zero_()
    step += 1


class StochasticSwaps(Callback):
    def __init__(self, model: nn.Module):
        self.model = model

    def on_step_begin(self, state) -> None:
        draw_swaps(self.model)


def unroll(shared: nn.Module) -> nn.Module:
    """The plain 2N-layer model (no shared parameters, no hooks) with the shared model's evaluation outputs."""
    plain = type(shared)(shared.config)
    plain.load_state_dict({name: tensor.clone() for name, tensor in shared.state_dict().items() if name != STEP_BUFFER})
    return plain


@initialiser("sps", "Pea-KD SPS: run the student's layers twice with shared parameters", SPSConfig)
class SharedParameters(Initialiser):
    """Trains the student built before it as 2N layers of N layers' parameters; exported unrolled."""

    def validate(self, spec, student):
        if "wid" in student.initialisers():
            raise ValueError("sps shares the layers of a dense student; wid's compactors cannot be shared: choose one")

    def shape(self, spec, config, ctx):
        config = copy.deepcopy(config)
        config.num_hidden_layers *= 2
        return config

    def build(self, spec, ctx, start):
        model = share_layers(start.model, spec.mode)
        description = f"{start.description} + SPS ({spec.mode}): {model.config.num_hidden_layers // 2} layers of parameters run twice"
        return Start(model, start.layers_from, description, start.logs)

    def callbacks(self, spec, model):
        return [StochasticSwaps(model)] if spec.mode == "stochastic" else []

    def finalise(self, spec, model, ctx):
        return unroll(model), {"sps_trained_parameters": count_parameters(model)}
