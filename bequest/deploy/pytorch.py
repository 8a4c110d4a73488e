"""The PyTorch folder itself (config.json, model.safetensors): the baseline every other format is measured against."""

from __future__ import annotations

from pathlib import Path

from bequest.deploy.base import ExportFormat, register_format
from bequest.io import tensor_bytes


@register_format
class PyTorchFormat(ExportFormat):
    """PyTorch fp32: the exported folder, as transformers loads it"""

    key = "pytorch"
    runtime = "PyTorch"

    def folder(self, model_dir: Path) -> Path:
        return Path(model_dir)

    def write(self, model, sample, out):
        """Nothing to write: the folder is the export itself."""

    def load(self, out, model, threads):
        return model

    def size_bytes(self, out, model):
        return tensor_bytes(model)  # its weights as model.safetensors stores them (fp32), without tokenizer and card
