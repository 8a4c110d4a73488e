"""PyTorch with int8 linear layers (torch's dynamic quantization): each nn.Linear's weight stored as int8 with a
per-tensor scale, activations quantised on the fly; embeddings and LayerNorms stay fp32.

torch cannot write its quantised modules to safetensors, so the artifact holds their int8 weights, scales
and zero points as plain tensors beside the model's other tensors, and loading quantises the fp32 model's
structure and puts the stored int8 weights into it: what runs is what was written, no pickle involved.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from bequest.deploy.base import ExportFormat, register_format

WEIGHTS = "model.safetensors"


def quantized(model: nn.Module) -> nn.Module:
    """A copy of `model` with every nn.Linear dynamically quantised to int8."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch marks its quantised tensors deprecated (in favour of torchao)
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(model).cpu().eval(), {nn.Linear}, dtype=torch.qint8)


def _linears(model: nn.Module) -> dict[str, nn.Module]:
    from torch.ao.nn.quantized.dynamic import Linear

    return {name: module for name, module in model.named_modules() if isinstance(module, Linear)}


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every plain tensor of the quantised model, and each int8 linear's weight, scale, zero point and bias."""
    linears = _linears(model)
    tensors = {name: value.contiguous() for name, value in model.state_dict().items()
               if isinstance(value, torch.Tensor) and name.rsplit(".", 1)[0] not in linears
               and name.rsplit(".", 2)[0] not in linears}  # a linear's scale, zero_point, _packed_params.dtype
    for name, module in linears.items():
        weight, bias = module._weight_bias()
        tensors[f"{name}.weight_int8"] = weight.int_repr().contiguous()
        tensors[f"{name}.weight_scale"] = torch.tensor(weight.q_scale(), dtype=torch.float64)
        tensors[f"{name}.weight_zero_point"] = torch.tensor(weight.q_zero_point(), dtype=torch.int64)
        if bias is not None:
            tensors[f"{name}.bias"] = bias.detach().contiguous()
    return tensors


@register_format
class TorchInt8Format(ExportFormat):
    """PyTorch with int8 linear layers (torch dynamic quantization)"""

    key = "torch-int8"
    runtime = "PyTorch"

    def write(self, model, sample, out):
        save_file(_tensors(quantized(model)), str(Path(out) / WEIGHTS))

    def load(self, out, model, threads):
        stored = load_file(str(Path(out) / WEIGHTS))
        linears = {name for name, module in model.named_modules() if isinstance(module, nn.Linear)}
        base = copy.deepcopy(model).cpu()
        base.load_state_dict({k: v for k, v in stored.items() if k.rsplit(".", 1)[0] not in linears}, strict=False)
        runner = quantized(base)
        for name, module in _linears(runner).items():
            weight = torch._make_per_tensor_quantized_tensor(stored[f"{name}.weight_int8"],
                                                             float(stored[f"{name}.weight_scale"]),
                                                             int(stored[f"{name}.weight_zero_point"]))
            module.set_weight_bias(weight, stored.get(f"{name}.bias"))
        return runner
