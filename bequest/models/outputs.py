"""Reading a Hugging Face model output as one logits tensor, whatever its head."""

from __future__ import annotations

import torch

PADDING_LOGIT = -1e4  # a token that cannot be the answer: exp() is 0 in fp32, bf16 and fp16 alike


def output_logits(output) -> torch.Tensor | None:
    """A model output's logits: classification logits, or QA start/end scores stacked to (batch, tokens, 2)."""
    if getattr(output, "start_logits", None) is not None:
        return torch.stack([output.start_logits, output.end_logits], dim=-1)
    return getattr(output, "logits", None)
