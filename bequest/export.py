"""Exporting a student as an ordinary Hugging Face folder that needs no bequest to use.

The folder holds config.json, model.safetensors, the tokenizer, a model card (README.md) that
records how the model was made and what it scored, and `bequest.json`, the same record in a
form `bequest evaluate` reads to re-score the model exactly as it was scored here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from bequest.io import refresh_manifest, write_text

EXPORT_RECORD = "bequest.json"


def _scores(record: dict) -> str:
    if "dev" in record:
        splits = ["dev", *(["test"] if "test" in record else [])]
        rows = "\n".join(f"| {name} | " + " | ".join(f"{record[split][name]:.4f}" for split in splits) + " |"
                         for name in record["dev"])
        teacher = "; ".join(f"{split}: " + ", ".join(f"{k} {v:.4f}" for k, v in record["teacher"][split].items())
                            for split in splits if split in record["teacher"])
        return f"""## Scores

Scored after export, from the files in this folder{" (the test split once, at the end)" if "test" in record else ""}.

| metric | {" | ".join(splits)} |
|---|{"---|" * len(splits)}
{rows}

Teacher scores: {teacher}.
"""
    return f"""## Distillation loss

A general (task-agnostic) student: fine-tune it, or distil a task into it, before use.
Held-out distillation loss at the end of training: {record['heldout_loss']:.4f}.
"""


def _shared(record: dict) -> str:
    if not record.get("sps_trained_parameters"):
        return ""
    return (f"; trained with shuffled parameter sharing as {record['num_layers'] // 2} layers of parameters run twice "
            f"({record['sps_trained_parameters']:,} parameters), exported unrolled with identical outputs")


def write_model_card(folder: Path, record: dict) -> None:
    """A model card with hub metadata, scores, and the provenance a reader needs to trust them."""
    task = record["task"]
    teacher = record["teacher"]
    layers = record.get("layers_from")
    start = f"teacher layers {layers} ({record['init']})" if layers is not None else record["init"]
    title, usage, pipeline = f"a {record['num_layers']}-layer {record['describes']}", record["model_class"], record["pipeline_tag"]
    tags = [task] if task else ["task-agnostic"]
    if record.get("teacher_as_is"):  # a kind with no labels to fine-tune on (sentence embeddings)
        origin = "used as it is: its outputs are the targets"
    elif task:
        origin = f"fine-tuned on {task} {'by bequest' if teacher.get('finetuned_by_bequest') else 'beforehand'}"
    else:
        origin = "distilled on raw text"
    front = yaml.safe_dump({"library_name": record.get("library_name", "transformers"), "pipeline_tag": pipeline,
                            "tags": ["bequest", "distillation", *tags]}, sort_keys=False)
    rescore = f"\nRe-score it: `bequest evaluate path/to/this/folder --task {task}`.\n" if task else ""
    example = ""
    if record.get("pipeline_example"):  # what a plain transformers pipeline (or sentence-transformers) does with it
        example = f"""
Or:

```python
{record.get('example_import', 'from transformers import pipeline')}
folder = "path/to/this/folder"
print({record['pipeline_example']})
```
"""
    card = f"""---
{front}---

# {record['name']}: {title}

Distilled with bequest {record['bequest_version']} from the teacher `{teacher['model']}` ({origin}).

- Initialisation: {start}
- Shape: {record['num_layers']} layers, hidden size {record['hidden_size']}
- Training objectives: {record['objectives']}
- Parameters: {record['parameters']:,} (teacher: {teacher['parameters']:,}){_shared(record)}
- Seed: {record['seed']}; maximum sequence length: {record['max_length']}

{_scores(record)}
## Use

```python
from transformers import {usage}, AutoTokenizer
model = {usage}.from_pretrained("path/to/this/folder")
tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")
```
{example}{rescore}
## Recipe

```yaml
{record['recipe'].rstrip()}
```
"""
    (folder / "README.md").write_text(card)


def deployment_section(deploy: dict, main: str) -> str:
    """The model card's deployment table: this model and the others of its run in every format written."""
    from bequest.results_table import deployment_caption, deployment_rows

    columns, rows = deployment_rows(deploy, main)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns), *("| " + " | ".join(r) + " |" for r in rows)]
    return (f"## Deployment\n\nEach format's artifact is in the subfolder of its name, scored from its files; "
            f"{deployment_caption(deploy)}.\n\n" + "\n".join(lines) + "\n\n")


def add_deployment(folder: Path, deploy: dict, main: str) -> None:
    """Add the deployment table to an exported folder's model card and record (and refresh its manifest)."""
    folder = Path(folder)
    card = re.sub(r"\n## Deployment\n.*?(?=\n## )", "", (folder / "README.md").read_text(), count=1, flags=re.S)
    write_text(folder / "README.md", card.replace("\n## Recipe\n", "\n" + deployment_section(deploy, main) + "## Recipe\n", 1))
    record = read_record(folder) or {}
    write_record(folder, {**record, "deploy": deploy})
    refresh_manifest(folder)


def write_record(folder: Path, record: dict) -> None:
    (folder / EXPORT_RECORD).write_text(json.dumps({k: v for k, v in record.items() if k != "recipe"}, indent=2) + "\n")


def read_record(folder: Path) -> dict | None:
    path = Path(folder) / EXPORT_RECORD
    return json.loads(path.read_text()) if path.is_file() else None
