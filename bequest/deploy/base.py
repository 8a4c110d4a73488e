"""Deployment formats, what `export.formats` and `bequest export --format` name: each writes an artifact of a
model into a subfolder of its model folder and loads it back as a runner, a module whose forward takes the
tokenizer's tensors and returns the logits (or QA start and end logits), so scoring, timing and prediction
treat every format alike. A new format is a module that registers a subclass."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from bequest.registry import Registry

FORMATS = Registry("export format", "export formats (export.formats, bequest export --format)")


class ExportFormat:
    """Writes and loads one kind of artifact; `key` is its registry name and its subfolder."""

    key = ""
    runtime = ""  # what runs it, for tables: "PyTorch", "ONNX Runtime"

    def folder(self, model_dir: Path) -> Path:
        return Path(model_dir) / self.key

    def write(self, model: nn.Module, sample: dict[str, torch.Tensor], out: Path) -> None:
        """Write the artifact of `model` (fp32, on the CPU, in eval mode) into the empty folder `out`; `sample`
        is a real batch of its inputs, of at least two examples."""
        raise NotImplementedError

    def load(self, out: Path, model: nn.Module, threads: int) -> nn.Module:
        """The runner of the artifact in `out`; `model` is the fp32 PyTorch model it was made from."""
        raise NotImplementedError

    def size_bytes(self, out: Path, model: nn.Module) -> int:
        """The artifact's bytes on disk."""
        return sum(path.stat().st_size for path in Path(out).rglob("*") if path.is_file())


def register_format(cls: type[ExportFormat]) -> type[ExportFormat]:
    FORMATS.register(cls.key, cls(), description=(cls.__doc__ or "").strip().split("\n")[0])
    return cls


def output_tensors(output) -> tuple[torch.Tensor, ...]:
    """A model output as its tensors in a fixed order: (logits,) or (start_logits, end_logits)."""
    if getattr(output, "start_logits", None) is not None:
        return output.start_logits, output.end_logits
    return (output.logits,)


def output_names(output) -> list[str]:
    return ["start_logits", "end_logits"] if getattr(output, "start_logits", None) is not None else ["logits"]
