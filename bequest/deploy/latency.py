"""Timing models as they will run: PyTorch modules and ONNX Runtime sessions alike are given the same real
dev batch, timed in alternation pass by pass (so machine noise hits all of them alike) after warm-up passes
that are not counted, with the thread count fixed for the whole measurement and stated with it."""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager

import torch
from torch import nn

from bequest.data.features import Encoded
from bequest.eval.predict import model_device

WARMUP = 3  # passes before timing: allocator, kernel selection, ONNX Runtime's first-run planning


@contextmanager
def fixed_threads(count: int | None):
    """torch's intra-op threads set to `count` (None: as they are) for the block; ONNX Runtime sessions
    created inside it take the same number."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@torch.inference_mode()
def latencies(models: dict[str, nn.Module], data: Encoded, batch_sizes: list[int], pad_token_id: int,
              repeats: int) -> dict[str, dict[str, dict[str, float]]]:
    """{model: {batch size: {"p50": ms, "p90": ms}}} of one forward pass over the split's first examples."""
    times = {name: {str(size): [] for size in batch_sizes} for name in models}
    for size in batch_sizes:
        batch = data.batch(list(range(min(size, len(data)))), pad_token_id)
        prepared = {}
        for name, model in models.items():
            model.eval()
            device = model_device(model)
            prepared[name] = (model, device, {k: v.to(device) for k, v in batch.items() if k in data.inputs})
            for _ in range(WARMUP):
                model(**prepared[name][2])
        for _ in range(repeats):
            for name, (model, device, inputs) in prepared.items():
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                model(**inputs)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[name][str(size)].append((time.perf_counter() - start) * 1000)
    return {name: {size: _percentiles(values) for size, values in by_size.items()} for name, by_size in times.items()}


def _percentiles(values: list[float]) -> dict[str, float]:
    p90 = statistics.quantiles(values, n=10, method="inclusive")[8] if len(values) > 1 else values[0]
    return {"p50": statistics.median(values), "p90": p90}
