"""Deployable artifacts of a model: formats (PyTorch, ONNX, int8) written, scored and timed the same way."""

import bequest.deploy.onnx  # noqa: F401  (each module registers its formats)
import bequest.deploy.pytorch  # noqa: F401
import bequest.deploy.torch_int8  # noqa: F401
from bequest.deploy.base import FORMATS, ExportFormat, register_format

__all__ = ["FORMATS", "ExportFormat", "register_format"]
