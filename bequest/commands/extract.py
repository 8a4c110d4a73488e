"""`bequest extract`: the recipe's extracted (ETD) student, before any distillation, as a model folder."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from transformers import set_seed

from bequest.config import RunConfig
from bequest.errors import BequestError
from bequest.init.student import build_student
from bequest.io import building_dir, tensor_bytes, write_json
from bequest.models.loading import count_parameters
from bequest.pipeline import check_inputs
from bequest.train.runtime import make_accelerator


def extract_recipe_student(config: RunConfig, name: str | None, output: Path, overwrite: bool) -> None:
    candidates = [s for s in config.students if "extract" in s.initialisers() and (name is None or s.name == name)]
    if not candidates:
        named = f"no student named '{name}' with" if name else "no student has"
        raise BequestError(f"{named} an extract section in the recipe: add extract: {{hidden_size: ...}} to a student")
    output = Path(output)
    if output.exists() and not overwrite:
        raise BequestError(f"{output} already exists: choose another --output, or pass --overwrite to replace it")
    set_seed(config.seed)
    inputs = check_inputs(config, make_accelerator(config.runtime))
    run = inputs.run
    # Taylor scores need the task-trained teacher (fine-tuned once and cached); nothing is written to the run directory
    teacher, _ = run.workload.ready_teacher(run.tokenizer, run.accelerator, inputs.teacher, inputs.teacher_has_head)
    teacher = run.accelerator.unwrap_model(teacher, keep_fp32_wrapper=False).to(run.accelerator.device).eval()
    start = build_student(run.student_context(candidates[0], teacher))
    model = start.model
    with building_dir(output, tensor_bytes(model)) as tmp:
        model.save_pretrained(tmp)
        run.tokenizer.save_pretrained(tmp)
        write_json(tmp / "extraction.json", {"teacher": config.teacher.model, "init": start.description, **start.logs["extraction"]})
    Console(stderr=True).print(f"extracted {candidates[0].name} ({count_parameters(model):,} parameters, hidden "
                               f"{model.config.hidden_size}, {model.config.num_hidden_layers} layers) to {output}")
