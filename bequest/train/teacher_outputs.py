"""The teacher's internals on the training data, computed once and kept at reduced precision.

Objectives that read the teacher's hidden states or Q/K/V would otherwise run the teacher at
every step of every epoch. The teacher is frozen and in eval mode, so its outputs on an example
never change: one pass over the data computes them, and each step gathers its batch's rows.
Only the layers some objective reads are kept, unpadded, as fp16; when that needs more memory
than the run's budget (`runtime.teacher_cache_mb`), the teacher runs at every step instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from bequest.data.features import inference_batches, model_inputs
from bequest.models.arch import position_bias
from bequest.models.capture import Captured, run_captured
from bequest.objectives.base import Term

Slot = tuple[str, int]  # ("hidden" | "queries" | "keys" | "values", layer index)


def teacher_reads(terms: dict[str, tuple[float, Term]]) -> set[Slot]:
    """Every teacher tensor some term reads."""
    return set().union(*(term.teacher_reads() for _, term in terms.values()))


@dataclass
class TeacherOutputs:
    tables: dict[Slot, torch.Tensor]  # slot -> (all real tokens of the data, width)
    offsets: torch.Tensor  # (N,) first row of each example
    lengths: torch.Tensor  # (N,) real tokens of each example
    num_layers: int
    num_heads: int

    def captured(self, index: torch.Tensor, mask: torch.Tensor) -> Captured:
        """The teacher's tensors for the examples `index`, padded like `mask` (zeros at padding)."""
        index = index.cpu()
        positions = torch.arange(mask.shape[1])
        real = positions[None, :] < self.lengths[index][:, None]
        rows = torch.where(real, self.offsets[index][:, None] + positions[None, :], 0)
        found = {"hidden": [None] * (self.num_layers + 1), "queries": [None] * self.num_layers,
                 "keys": [None] * self.num_layers, "values": [None] * self.num_layers}
        for (slot, layer), table in self.tables.items():
            found[slot][layer] = table[rows].float().masked_fill_(~real[..., None], 0.0).to(mask.device)
        return Captured(mask=mask, num_heads=self.num_heads, hidden=tuple(found["hidden"]),
                        queries=found["queries"], keys=found["keys"], values=found["values"])


def cache_teacher_outputs(teacher: nn.Module, data, reads: set[Slot], budget_mb: float, batch_size: int,
                          pad_token_id: int, dtype: torch.dtype = torch.float16) -> tuple[TeacherOutputs | None, str]:
    """The teacher's `reads` on every example of `data`, or None (the teacher then runs every step);
    and a line saying which, and why."""
    config = teacher.config
    lengths = torch.tensor(data.lengths)
    size_mb = int(lengths.sum()) * config.hidden_size * len(reads) * torch.finfo(dtype).bits / 8 / 2**20
    attention = any(slot != "hidden" for slot, _ in reads)
    if attention and position_bias(config.model_type):
        return None, f"teacher runs every step: caching {config.model_type}'s attention is not supported (relative position bias)"
    if size_mb > budget_mb:
        return None, (f"teacher runs every step: its outputs need {size_mb:.0f} MB, over runtime.teacher_cache_mb={budget_mb:g} "
                      "(raise it to cache them)")
    offsets = torch.cumsum(lengths, 0) - lengths
    tables = {slot: torch.zeros(int(lengths.sum()), config.hidden_size, dtype=dtype) for slot in sorted(reads)}
    device = next(teacher.parameters()).device
    with torch.inference_mode():
        for indices in tqdm(inference_batches(data.lengths, batch_size), desc="caching teacher outputs", unit="batch",
                            leave=False, dynamic_ncols=True):
            batch = {k: v.to(device) for k, v in model_inputs(data.batch(indices, pad_token_id)).items()}
            out = run_captured(teacher, batch, hidden=any(slot == "hidden" for slot, _ in reads), attention=attention)
            index = torch.tensor(indices)
            positions = torch.arange(batch["attention_mask"].shape[1])
            real = positions[None, :] < lengths[index][:, None]
            rows = (offsets[index][:, None] + positions[None, :])[real]
            for slot, layer in tables:
                tables[slot, layer][rows] = getattr(out, slot)[layer].cpu()[real].to(dtype)
    outputs = TeacherOutputs(tables, offsets, lengths, config.num_hidden_layers, config.num_attention_heads)
    return outputs, f"teacher outputs cached: {len(reads)} tensors per token at {dtype}, {size_mb:.0f} MB"
