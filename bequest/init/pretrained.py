"""A student that starts from a pretrained model (e.g. a general student distilled on raw text)
instead of the teacher's layers: its own shape, the teacher's vocabulary."""

from __future__ import annotations

import copy

import torch

from bequest.init.base import Initialiser, Start, initialiser
from bequest.models.loading import (
    load_config,
    load_encoder,
    load_task_model,
    load_tokenizer,
)


@initialiser("model", "start from this pretrained student (a folder or hub id) instead of teacher layers", str)
class Pretrained(Initialiser):
    builds = True

    def validate(self, source, student):
        teacher_weights = {"layers", "init"} & student.model_fields_set
        if teacher_weights or {"extract", "wid"} & set(student.initialisers()):
            raise ValueError("a student given by model starts from that model: drop layers, init, extract and wid")

    def check(self, source, ctx):
        load_tokenizer(ctx.tokenizer_name, load_config(source), source)  # refuses another vocabulary than the teacher's

    def shape(self, source, config, ctx):
        return copy.deepcopy(load_config(source))

    def build(self, source, ctx, start):
        torch.manual_seed(ctx.seed)  # a new task head starts the same every time
        if ctx.task:
            model, _ = load_task_model(source, ctx.task, **ctx.task.label_maps())
        else:
            model = load_encoder(source)
        return Start(model, None, f"pretrained {source}")
