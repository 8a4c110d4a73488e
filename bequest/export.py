"""Exporting a student as an ordinary Hugging Face folder that needs no bequest to use.

The folder holds config.json, model.safetensors, the tokenizer, a model card (README.md) that
records how the model was made and what it scored, and `bequest.json`, the same record in a
form `bequest evaluate` reads to re-score the model exactly as it was scored here.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

EXPORT_RECORD = "bequest.json"


def write_model_card(folder: Path, record: dict) -> None:
    """A model card with hub metadata, scores, and the provenance a reader needs to trust them."""
    task = record["task"]
    scores = "\n".join(f"| {name} | {value:.4f} |" for name, value in record["dev"].items())
    teacher = record["teacher"]
    layers = record.get("layers_from")
    init = f"teacher layers {layers}" if layers is not None else "random initialisation"
    front = yaml.safe_dump({"library_name": "transformers", "pipeline_tag": "text-classification",
                            "tags": ["bequest", "distillation", task]}, sort_keys=False)
    card = f"""---
{front}---

# {record['name']}: a {record['num_layers']}-layer student for GLUE {task.upper()}

Distilled with bequest {record['bequest_version']} from the teacher
`{teacher['model']}` (fine-tuned on {task} {'by bequest' if teacher.get('finetuned_by_bequest') else 'beforehand'}).

- Initialisation: {init} ({record['init']})
- Training objectives: {record['objectives']}
- Parameters: {record['parameters']:,} (teacher: {teacher['parameters']:,})
- Seed: {record['seed']}; maximum sequence length: {record['max_length']}

## Dev-set scores

Scored after export, from the files in this folder.

| metric | value |
|---|---|
{scores}

Teacher dev scores: {', '.join(f"{k} {v:.4f}" for k, v in teacher['dev'].items())}.

## Use

```python
from transformers import AutoModelForSequenceClassification, AutoTokenizer
model = AutoModelForSequenceClassification.from_pretrained("path/to/this/folder")
tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")
```

Re-score it: `bequest evaluate path/to/this/folder --task {task}`.

## Recipe

```yaml
{record['recipe'].rstrip()}
```
"""
    (folder / "README.md").write_text(card)


def write_record(folder: Path, record: dict) -> None:
    (folder / EXPORT_RECORD).write_text(json.dumps({k: v for k, v in record.items() if k != "recipe"}, indent=2) + "\n")


def read_record(folder: Path) -> dict | None:
    path = Path(folder) / EXPORT_RECORD
    return json.loads(path.read_text()) if path.is_file() else None
