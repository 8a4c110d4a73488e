"""What a run records about where it ran (environment.json): versions, machine, precision, data."""

from __future__ import annotations

import platform
import sys
from datetime import datetime, timezone
from importlib.metadata import version

import torch

from bequest import __version__
from bequest.train.runtime import resolved_precision


def environment(run) -> dict:
    """`run`: the run's `bequest.distil.Run` (its config and workload)."""
    packages = ("torch", "transformers", "accelerate", "datasets", "safetensors", "numpy", "scipy", "scikit-learn")
    return {
        "bequest": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: version(name) for name in packages},
        "torch_threads": torch.get_num_threads(),
        "precision": resolved_precision(run.config.runtime),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "seed": run.config.seed,
        "command": sys.argv,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data_files": run.workload.file_hashes,
        **run.workload.sizes(),
    }
