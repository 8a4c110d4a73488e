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

import torch
import torch.nn.functional as F
from torch import nn

from bequest.errors import BequestError
from bequest.models.arch import for_layer
from bequest.models.loading import layer_list

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
    swapped = torch.zeros(depth, dtype=torch.bool)

    def draw(module, args, kwargs):
        swapped.zero_()
        if module.training and torch.is_grad_enabled():
            step = getattr(module, STEP_BUFFER)
            if int(step) % 2 == 1:
                swapped.copy_(torch.rand(depth) < 0.5)
            step += 1

    model.register_forward_pre_hook(draw, with_kwargs=True)
    for position, layer in enumerate(layers):
        modules = dict(layer.named_modules())
        for own, partner in ((query, key), (key, query)):
            other = modules[partner]
            modules[own].register_forward_hook(
                lambda _m, inputs, output, other=other, physical=position % depth:
                F.linear(inputs[0], other.weight, other.bias) if swapped[physical] else None)


def unroll(shared: nn.Module) -> nn.Module:
    """The plain 2N-layer model (no shared parameters, no hooks) with the shared model's evaluation outputs."""
    plain = type(shared)(shared.config)
    plain.load_state_dict({name: tensor.clone() for name, tensor in shared.state_dict().items() if name != STEP_BUFFER})
    return plain
