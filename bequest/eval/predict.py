"""Running a model over a split: predictions in the split's order."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from bequest.data.features import Encoded, inference_batches
from bequest.models.outputs import PADDING_LOGIT, output_logits


def model_device(model: nn.Module) -> torch.device:
    """Where a model's inputs go: its parameters' device; a runner without parameters (ONNX Runtime) takes CPU tensors."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


@torch.inference_mode()
def predict(model: nn.Module, data: Encoded, batch_size: int, pad_token_id: int, desc: str = "predicting") -> np.ndarray:
    """Logits for every example, in the split's order (batches are length-sorted for speed).

    QA logits (n, tokens, 2) are padded to the longest example with a logit no token wins with."""
    was_training = model.training
    model.eval()
    device = model_device(model)
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
