"""Every model in every export format, written, scored and timed in one place: the deployment table of a run
(`export.formats`) and of `bequest export`.

Each artifact is scored on the same dev data as the PyTorch model, by the same metrics, from the files
written; all of them are then timed together in alternation (`bequest.deploy.latency`) at batch 1 and
at the latency batch size, on real dev examples, with one thread count. Speed-ups are over the first
model's PyTorch fp32 row (the teacher's in a run).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from bequest.data.features import Encoded
from bequest.deploy.base import FORMATS
from bequest.deploy.latency import fixed_threads, latencies
from bequest.io import building_dir, tensor_bytes
from bequest.models.outputs import output_logits

SAMPLE_EXAMPLES = 4  # the export's example inputs: real dev examples of different lengths


def deployment_table(models: dict[str, tuple[nn.Module, Path]], formats: list[str], data: Encoded,
                     score: Callable[[nn.Module], dict], known: dict[str, dict], pad_token_id: int, batch_size: int,
                     repeats: int, threads: int | None) -> dict:
    """{"threads", "batch_sizes", "rows": [...]} for `models` (name -> (fp32 model, its folder)) in `formats`.

    `score(runner)` gives a runner's scores ({"dev": ..., "test": ...}); `known` holds the PyTorch rows' scores
    when they were taken already (from the exported files). Artifacts go to <folder>/<format>."""
    sample, check = (_inputs(data, size, pad_token_id) for size in (SAMPLE_EXAMPLES, batch_size))
    rows, runners = [], {}
    with fixed_threads(threads) as threads:
        for name, (model, folder) in models.items():
            model = model if next(model.parameters()).device.type == "cpu" else copy.deepcopy(model).cpu()
            model.eval()
            reference = _outputs(model, check)
            for key in formats:
                fmt = FORMATS[key].implementation
                out = fmt.folder(folder)
                if key != "pytorch":
                    with building_dir(out, tensor_bytes(model)) as tmp:
                        fmt.write(model, sample, tmp)
                runner = fmt.load(out, model, threads)
                scores = known.get(name) if key == "pytorch" and name in known else score(runner)
                difference = float(np.abs(_outputs(runner, check) - reference).max())
                rows.append({"model": name, "format": key, "runtime": fmt.runtime, "path": str(out),
                             "size_mb": round(fmt.size_bytes(out, model) / 2**20, 2), **scores,
                             "max_abs_diff": difference})
                runners[(name, key)] = runner
        sizes = sorted({1, batch_size})
        timed = latencies({f"{name}/{key}": runner for (name, key), runner in runners.items()}, data, sizes,
                          pad_token_id, repeats)
    base = timed[f"{rows[0]['model']}/pytorch"]
    for row in rows:
        row["latency_ms"] = timed[f"{row['model']}/{row['format']}"]
        row["speedup"] = {size: base[size]["p50"] / row["latency_ms"][size]["p50"] for size in base}
    return {"threads": threads, "batch_sizes": sizes, "repeats": repeats, "baseline": f"{rows[0]['model']} pytorch",
            "rows": rows}


def _inputs(data: Encoded, size: int, pad_token_id: int) -> dict[str, torch.Tensor]:
    """The model inputs of the split's first `size` examples."""
    batch = data.batch(list(range(min(size, len(data)))), pad_token_id)
    return {name: value for name, value in batch.items() if name in data.inputs}


@torch.inference_mode()
def _outputs(model: nn.Module, inputs: dict[str, torch.Tensor]) -> np.ndarray:
    """The model's logits on one batch (QA: start and end stacked)."""
    return output_logits(model(**inputs)).float().numpy()
