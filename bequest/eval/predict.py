"""Running a model over a split (predictions in the split's order) and timing it."""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from bequest.data.features import Encoded, inference_batches
from bequest.models.outputs import PADDING_LOGIT, output_logits


@torch.inference_mode()
def predict(model: nn.Module, data: Encoded, batch_size: int, pad_token_id: int, desc: str = "predicting") -> np.ndarray:
    """Logits for every example, in the split's order (batches are length-sorted for speed).

    QA logits (n, tokens, 2) are padded to the longest example with a logit no token wins with."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outputs = None
    batches = inference_batches(data.lengths, batch_size)
    for indices in tqdm(batches, desc=desc, unit="batch", leave=False, dynamic_ncols=True):
        batch = data.batch(indices, pad_token_id)
        inputs = {k: v.to(device) for k, v in batch.items() if k in data.inputs}
        logits = output_logits(model(**inputs)).float().cpu().numpy()
        if outputs is None:  # the first batch holds the longest examples
            outputs = np.full((len(data), *logits.shape[1:]), PADDING_LOGIT, dtype=np.float32)
        outputs[indices, : logits.shape[1]] = logits
    model.train(was_training)
    return outputs


@torch.inference_mode()
def latencies_ms(models: dict[str, nn.Module], data: Encoded, batch_size: int, pad_token_id: int, repeats: int) -> dict[str, float]:
    """Median wall time of one forward pass over the split's first `batch_size` examples, per model.

    The models are timed in alternation, pass by pass, so that machine noise hits all of them alike.
    """
    batch = data.batch(list(range(min(batch_size, len(data)))), pad_token_id)
    prepared = {}
    for name, model in models.items():
        model.eval()
        device = next(model.parameters()).device
        prepared[name] = (model, device, {k: v.to(device) for k, v in batch.items() if k in data.inputs})
        for _ in range(3):  # warm-up: allocator and kernel selection
            model(**prepared[name][2])
    times = {name: [] for name in models}
    for _ in range(repeats):
        for name, (model, device, inputs) in prepared.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(**inputs)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}
