"""Training-loop callbacks: what happens at fixed points of training, counted in optimiser steps.

The loop (`bequest.train.loop`) calls every callback's hooks with its state; its own logging,
evaluation and checkpoints are callbacks too, and an initialiser or objective adds its own
(WID's mask schedule, SPS's random swaps) without the loop knowing what they are.
"""

from __future__ import annotations


class Callback:
    def on_step_begin(self, state) -> None:
        """Before the first forward pass of optimiser step `state.step + 1`."""

    def on_step_end(self, state) -> None:
        """After the optimiser step (`state.step` counts it)."""

    def on_epoch_end(self, state) -> None:
        """After the epoch's last step, its train loss recorded."""
