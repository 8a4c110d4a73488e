"""A parameter's own optimiser settings, for parameters that must not train like the model's others.

A method that adds such parameters (WID's compactors) marks them here; the training loop builds
its AdamW parameter groups from the marks. Neither side imports the other.
"""

from __future__ import annotations

from torch import nn

OPTIMIZER_SETTINGS = "bequest_optimizer"  # a parameter attribute: {"lr": ..., "weight_decay": ...} of its own


def set_optimizer_settings(param: nn.Parameter, **settings: float) -> None:
    setattr(param, OPTIMIZER_SETTINGS, settings)


def optimizer_settings(param: nn.Parameter) -> dict[str, float]:
    return getattr(param, OPTIMIZER_SETTINGS, {})
