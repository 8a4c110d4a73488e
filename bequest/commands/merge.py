"""`bequest merge`: the latest checkpoint of a WID student (of a killed or still running run),
merged at the masks it holds into a model folder."""

from __future__ import annotations

import copy
from pathlib import Path

from rich.console import Console
from safetensors.torch import load_file
from transformers import AutoModel

from bequest.config import load_config as load_recipe
from bequest.errors import BequestError
from bequest.init.wid import Compacting
from bequest.io import building_dir, tensor_bytes, write_json
from bequest.models.loading import (
    count_parameters,
    load_config,
    load_tokenizer,
    task_model_class,
)
from bequest.run_dir import RECIPE_FILE, check_checkpoint, is_run_dir, latest_checkpoint
from bequest.workload import workload


def merge_wid_checkpoint(run_dir: Path, name: str | None, output: Path, overwrite: bool) -> None:
    run_dir, output = Path(run_dir), Path(output)
    if not is_run_dir(run_dir):
        raise BequestError(f"{run_dir} is not a bequest run directory (no bequest marker in it)")
    config = load_recipe(run_dir / RECIPE_FILE)
    candidates = [s for s in config.students if "wid" in s.initialisers() and (name is None or s.name == name)]
    if not candidates:
        raise BequestError(f"{'no student named ' + repr(name) + ' with' if name else 'no student has'} a wid section in {run_dir / RECIPE_FILE}")
    student = candidates[0]
    stages = sorted((run_dir / "checkpoints" / student.name).glob("stage-*"), key=lambda p: int(p.name.split("-")[1]))
    checkpoint = latest_checkpoint(stages[-1]) if stages else None
    if checkpoint is None:
        raise BequestError(f"{student.name} has no checkpoint in {run_dir / 'checkpoints'}: none saved yet, or the student "
                           f"finished and its merged model is {run_dir / student.name}")
    if output.exists() and not overwrite:
        raise BequestError(f"{output} already exists: choose another --output, or pass --overwrite to replace it")
    shape = copy.deepcopy(load_config(config.teacher.model))
    shape.num_hidden_layers = student.layers
    # the task as the run resolved it: a task on the user's files takes its classes from them
    task = workload(config).task if config.task else None
    if task:
        shape.update({"num_labels": task.num_labels, **task.label_maps()})
    model = (task_model_class(task) if task else AutoModel).from_config(shape)
    wrapped = Compacting(model, student.initialisers()["wid"])
    check_checkpoint(checkpoint)
    saved = load_file(str(checkpoint / "model.safetensors"))
    wrapped.load_state_dict({key.removeprefix("student."): value for key, value in saved.items() if key.startswith("student.")})
    merged = wrapped.merge()
    tokenizer = load_tokenizer(config.teacher.tokenizer or config.teacher.model, shape, config.teacher.model)
    with building_dir(output, tensor_bytes(merged)) as tmp:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "wid.json", {"checkpoint": str(checkpoint), "step": int(wrapped.step), "kept": wrapped.selection().to_json()})
    Console(stderr=True).print(f"merged {student.name} at step {int(wrapped.step)} (hidden {merged.config.hidden_size}, "
                               f"{count_parameters(merged):,} parameters) to {output}")
