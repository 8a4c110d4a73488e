"""Exporting a student as an ordinary Hugging Face folder that needs no bequest to use.

The folder holds config.json, model.safetensors, the tokenizer, a model card (README.md) that
records how the model was made and what it scored, and `bequest.json`, the same record in a
form `bequest evaluate` reads to re-score the model exactly as it was scored here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

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


def card_data(record: dict, pipeline: str, tags: list[str]):
    """The card's hub metadata (huggingface_hub's ModelCardData): library, pipeline, tags, the teacher as base
    model when it is a hub id, and a model-index of every dev (and test) score, so the hub renders them."""
    from huggingface_hub import EvalResult, ModelCardData

    teacher = record["teacher"]["model"]
    hub_id = teacher.count("/") == 1 and not Path(teacher).expanduser().exists()
    results = [EvalResult(task_type=pipeline, dataset_type=record["task"], dataset_name=record["task"],
                          dataset_split="validation" if split == "dev" else "test", metric_type=name, metric_value=value,
                          metric_name=f"{split} {name}")
               for split in ("dev", "test") for name, value in record.get(split, {}).items()]
    return ModelCardData(library_name=record.get("library_name", "transformers"), pipeline_tag=pipeline, tags=tags,
                         base_model=teacher if hub_id else None, model_name=record["name"] if results else None,
                         eval_results=results or None)


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
    front = card_data(record, pipeline, ["bequest", "distillation", *tags]).to_yaml() + "\n"
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


def speed_section(record: dict, main: str) -> str:
    """The card's speed: its latency beside its teacher's as the run timed them, and the deployment table."""
    from bequest.results_table import deployment_caption, deployment_rows

    parts = []
    latency = record.get("latency")
    if latency:
        parts.append(f"A forward pass over {latency['batch_size']} dev examples took {latency['ms']:.1f} ms on the "
                     f"{latency['device']} ({latency['threads']} threads), the teacher's {latency['teacher_ms']:.1f} ms: "
                     f"{latency['speedup']:.2f}x faster (median of {latency['repeats']} passes, timed in alternation).")
    deploy = record.get("deploy")
    if deploy:
        columns, rows = deployment_rows(deploy, main)
        table = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns), *("| " + " | ".join(r) + " |" for r in rows)]
        parts.append("Deployment formats, each in the subfolder of its name and scored from its files; "
                     f"{deployment_caption(deploy)}.\n\n" + "\n".join(table))
    return "## Speed\n\n" + "\n\n".join(parts) + "\n\n" if parts else ""


def add_measurements(folder: Path, main: str, **measured) -> None:
    """Add what was measured after export (`latency`, `deploy`) to a folder's record and model card, and refresh
    its manifest."""
    folder = Path(folder)
    record = {**(read_record(folder) or {}), **measured}
    write_record(folder, record)
    card = re.sub(r"\n## Speed\n.*?(?=\n## )", "", (folder / "README.md").read_text(), count=1, flags=re.S)
    write_text(folder / "README.md", card.replace("\n## Recipe\n", "\n" + speed_section(record, main) + "## Recipe\n", 1))
    refresh_manifest(folder)


def write_record(folder: Path, record: dict) -> None:
    (folder / EXPORT_RECORD).write_text(json.dumps({k: v for k, v in record.items() if k != "recipe"}, indent=2) + "\n")


def read_record(folder: Path) -> dict | None:
    path = Path(folder) / EXPORT_RECORD
    return json.loads(path.read_text()) if path.is_file() else None
