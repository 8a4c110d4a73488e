"""Every architecture the README lists, through `bequest run` on a folder saved as a user gives it.

A tiny random checkpoint of each model type is written with `save_pretrained` (so its config.json is
what transformers writes, without attributes older configs had, such as DistilBERT's and MPNet's
`is_decoder`), then one recipe distils every method into it: layer selection with KD and attention
transfer, ETD extraction in width, Pea-KD SPS and WID. Each exported student must load with plain
transformers and give the dev accuracy the run reported.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_recipe, write_tiny_encoder
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from bequest.data.glue import load_glue_split
from bequest.data.tasks import get_task

TRAIN = {"epochs": 1, "batch_size": 8, "learning_rate": 1e-3}
EVERY_METHOD = [
    {"name": "layers", "layers": 2, "init": "lower", "objectives": {"kd": {}, "attention_mse": {}, "minilmv2": {}}, "train": TRAIN},
    {"name": "etd", "layers": 2, "init": "uniform", "extract": {"hidden_size": 16, "batches": 2}, "train": TRAIN},
    {"name": "sps", "layers": 1, "init": "lower", "sps": {"mode": "paper"}, "train": TRAIN},
    {"name": "wid", "layers": 2, "init": "lower", "wid": {"hidden_size": 16, "w_step": 1}, "train": TRAIN},
]
ARCHITECTURES = {
    "bert": EVERY_METHOD,
    "roberta": EVERY_METHOD,
    "xlm-roberta": EVERY_METHOD,
    "electra": EVERY_METHOD,
    "mpnet": EVERY_METHOD,
    "distilbert": EVERY_METHOD,
    # no attention capture, extraction or WID for DeBERTa-v2 (its attention is disentangled): layer selection and KD
    "deberta-v2": [{"name": "layers", "layers": 2, "init": "lower", "train": TRAIN}],
}


def _dev_accuracy(folder: Path, glue: Path, max_length: int) -> float:
    """The export scored with transformers alone, batch by batch in file order."""
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    dev = load_glue_split(get_task("sst2"), "dev", glue)
    predictions = []
    with torch.no_grad():
        for start in range(0, len(dev), 16):
            rows = dev[start : start + 16]
            inputs = tokenizer(rows["text_a"], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            predictions += model(**inputs).logits.argmax(-1).tolist()
    return float(np.mean(np.asarray(predictions) == np.asarray(dev["label"])))


@pytest.mark.parametrize("model_type", list(ARCHITECTURES))
def test_every_method_runs_on_a_saved_folder_of_each_architecture(model_type, tmp_path, tiny_glue, cli):
    teacher = write_tiny_encoder(tmp_path / f"{model_type}-teacher", model_type=model_type)
    config = json.loads((teacher / "config.json").read_text())
    assert "is_decoder" not in config or model_type in ("bert", "roberta", "xlm-roberta", "electra")
    recipe = tiny_recipe(tmp_path, teacher, tiny_glue, students=ARCHITECTURES[model_type])
    done = cli.run(["run", recipe], tmp_path)  # a process of its own (forked from the zygote, see zygote.py)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    for student in ARCHITECTURES[model_type]:
        row = results["students"][student["name"]]
        exported = tmp_path / "run" / student["name"]
        assert _dev_accuracy(exported, tiny_glue, 32) == pytest.approx(row["dev"]["accuracy"], abs=1e-9), student["name"]
        assert json.loads((exported / "config.json").read_text())["model_type"] == model_type
