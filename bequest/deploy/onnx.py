"""ONNX artifacts run by ONNX Runtime: the fp32 graph, and the graph with int8 weights.

The graph is exported by torch.onnx's dynamo exporter (torch.export), with the batch and sequence axes
dynamic. optimum-onnx, the maintained Hugging Face exporter, pins transformers < 4.58 and cannot be
installed beside the transformers 5 bequest runs on; torch.onnx's TorchScript exporter is deprecated.
int8 is ONNX Runtime's dynamic quantization: weights stored as int8, activations quantised on the fly.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from bequest.deploy.base import (
    ExportFormat,
    output_names,
    output_tensors,
    register_format,
)
from bequest.errors import BequestError

MODEL_FILE = "model.onnx"


INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # what a BERT-family tokenizer gives, by name


class _Tensors(nn.Module):
    """The model with named tensor inputs and plain tensors out, as an ONNX graph takes and returns them."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        given = {"attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return output_tensors(self.model(input_ids=input_ids, **{k: v for k, v in given.items() if v is not None}))


def export_onnx(model: nn.Module, sample: dict[str, torch.Tensor], path: Path) -> None:
    """Export `model` to the ONNX file `path`, every input's batch and sequence axes dynamic."""
    with torch.no_grad():
        names = output_names(model(**sample))
    batch, sequence = torch.export.Dim("batch", min=1), torch.export.Dim("sequence", min=1)
    unknown = [name for name in sample if name not in INPUTS]
    if unknown:
        raise BequestError(f"ONNX export takes {', '.join(INPUTS)}; this tokenizer also gives {', '.join(unknown)}")
    dynamic = {name: {0: batch, 1: sequence} for name in sample}  # torch.export wants exactly the given inputs
    chatter = io.StringIO()  # the exporter prints its progress and logs what it skips: the run's log says what happens
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(chatter):
            warnings.simplefilter("ignore")
            torch.onnx.export(_Tensors(model).eval(), (), str(path), kwargs=dict(sample), input_names=list(sample),
                              output_names=names, dynamic_shapes=dynamic, dynamo=True, external_data=False)
    except (torch.onnx.OnnxExporterError, ImportError) as error:  # one line says which model failed and why
        raise BequestError(f"ONNX export of this {type(model).__name__} failed ({type(error).__name__}: "
                           f"{str(error).splitlines()[0][:300]}): export another format") from None


class OnnxRunner(nn.Module):
    """An ONNX Runtime session on the CPU behind a module's forward: torch tensors in, an output with torch tensors out.

    The session's threads sleep between runs instead of spinning: spinning threads keep the cores busy after a
    run returns, which slows whatever runs next - another model in an alternating timing loop (measured: the
    PyTorch teacher at batch 1 took 4x longer beside spinning sessions), or the tokenizer in `bequest predict`.
    """

    def __init__(self, path: Path, threads: int):
        super().__init__()
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [node.name for node in self.session.get_inputs()]
        self.outputs = [node.name for node in self.session.get_outputs()]

    def forward(self, **inputs):
        missing = [name for name in self.inputs if name not in inputs]
        if missing:
            raise BequestError(f"the ONNX graph takes {', '.join(missing)}, which the tokenizer does not give")
        values = self.session.run(self.outputs, {name: inputs[name].cpu().numpy() for name in self.inputs})
        return SimpleNamespace(**{name: torch.from_numpy(value) for name, value in zip(self.outputs, values)})


@register_format
class OnnxFormat(ExportFormat):
    """ONNX fp32, run by ONNX Runtime"""

    key = "onnx"
    runtime = "ONNX Runtime"

    def write(self, model, sample, out):
        export_onnx(model, sample, Path(out) / MODEL_FILE)

    def load(self, out, model, threads):
        return OnnxRunner(Path(out) / MODEL_FILE, threads)


@register_format
class OnnxInt8Format(OnnxFormat):
    """ONNX with int8 weights (ONNX Runtime dynamic quantization, per output channel)"""

    key = "onnx-int8"
    per_channel = True  # one scale per output channel of each weight, rather than one per weight matrix

    def write(self, model, sample, out):
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with tempfile.TemporaryDirectory(dir=out) as scratch:
            fp32 = Path(scratch) / MODEL_FILE
            export_onnx(model, sample, fp32)
            quantize_dynamic(str(fp32), str(Path(out) / MODEL_FILE), weight_type=QuantType.QInt8,
                             per_channel=self.per_channel)


@register_format
class OnnxInt8PerTensorFormat(OnnxInt8Format):
    """ONNX with int8 weights, one scale per weight matrix: faster at batch 1, less accurate (docs/deploy.md)"""

    key = "onnx-int8-tensor"
    per_channel = False
