"""How fast and where, not what: mixed precision, compilation and processes, through accelerate.

Started by `accelerate launch` or `torchrun` with several processes, a run trains with DDP: on
GPUs over NCCL, on a machine without one over gloo, one CPU process per launcher slot."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedDataParallelKwargs, TorchDynamoPlugin

from bequest.config import RuntimeConfig
from bequest.errors import BequestError
from bequest.train.allocator import keep_freed_memory


def native_bf16() -> bool:
    """Whether this machine computes bf16 matmuls in hardware (else bf16 would be emulated, and slow)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()


def resolved_precision(runtime: RuntimeConfig) -> str:
    if runtime.precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    return runtime.precision


def cpu_processes() -> bool:
    """Several launched processes and no GPU: accelerate goes multi-process on CPUs only when told to."""
    return not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """Whether this process writes shared files (always, unless launched as one of several)."""
    return PartialState(cpu=cpu_processes()).is_main_process


def finish_trackers(accelerator: Accelerator) -> None:
    """Close the run's trackers. Not accelerate's end_training: that also ends the process group,
    which the next run of a sweep in the same processes still needs (it ends with the process)."""
    for tracker in accelerator.trackers:
        tracker.finish()


def make_accelerator(runtime: RuntimeConfig, project_dir: Path | None = None) -> Accelerator:
    """The accelerator of a run; with `runtime.trackers`, logging to them under `project_dir` once
    `init_trackers` is called."""
    precision = resolved_precision(runtime)
    for tracker, package in (("tensorboard", "tensorboard"), ("mlflow", "mlflow")):
        if tracker in runtime.trackers and importlib.util.find_spec(package) is None:
            raise BequestError(f"runtime.trackers {tracker} needs its package: pip install {package}")
    if precision == "fp16" and not torch.cuda.is_available():
        raise BequestError("runtime.precision fp16 needs a CUDA GPU: use bf16 (CPUs with AVX512-BF16/AMX run it fast) or fp32")
    plugin = TorchDynamoPlugin(backend="inductor", dynamic=True) if runtime.compile else None
    if not torch.cuda.is_available():
        keep_freed_memory()
    # accelerate keeps precision and compilation per process; one process may run several recipes
    # (tests, benchmarks, sweeps), so each starts from a clean state (the device/process setup stays)
    AcceleratorState._reset_state()
    # a stage may leave parameters out of its loss (an unused pooler, PTP's head after its stage)
    unused = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(mixed_precision="no" if precision == "fp32" else precision, dynamo_plugin=plugin, cpu=cpu_processes(),
                       log_with=runtime.trackers or None, project_dir=project_dir, kwargs_handlers=[unused])
