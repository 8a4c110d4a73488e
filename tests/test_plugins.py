"""A scorer registered from outside bequest/ (tests/plugins) is a recipe value like a built-in one, and is used."""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import AutoModel

from bequest.errors import BequestError
from bequest.init.etd import ExtractConfig, check_extract, extract_student
from bequest.init.extract import shares_heads
from bequest.init.importance import choose, magnitude_scores


def test_a_plugin_scorer_is_accepted_by_name_and_chooses_the_units(tiny_teacher):
    teacher = AutoModel.from_pretrained(tiny_teacher)
    config = teacher.config
    spec = ExtractConfig(hidden_size=config.hidden_size // 2, scorer="least_magnitude")
    with pytest.raises(BequestError, match="unknown: use one of random, magnitude, taylor"):
        check_extract(spec, teacher, None, on_task=True)  # not registered yet
    import plugins.least_magnitude  # noqa: F401  (registers it)

    check_extract(spec, teacher, None, on_task=True)
    unused_data = SimpleNamespace()  # only the taylor scorer reads batches
    _, selection, _ = extract_student(teacher, [0, 1], spec, unused_data, None, 0, seed=0)
    heads = spec.hidden_size // (config.hidden_size // config.num_attention_heads)
    neurons = round(config.intermediate_size * spec.hidden_size / config.hidden_size)
    largest = magnitude_scores(teacher)
    smallest = plugins.least_magnitude.least_magnitude_scores(teacher)
    assert selection == choose(smallest, [0, 1], spec.hidden_size, heads, neurons, shares_heads(teacher))
    assert selection.hidden != choose(largest, [0, 1], spec.hidden_size, heads, neurons, shares_heads(teacher)).hidden


def test_a_plugin_adds_an_objective_an_initialiser_and_a_task_kind_and_a_recipe_runs_them(tmp_path, tiny_teacher, tiny_glue,
                                                                                         monkeypatch):
    """tests/plugins/example.py, named by the recipe's plugins key, registers all three; nothing in bequest/ names them."""
    import torch
    from conftest import tiny_recipe
    from safetensors.torch import load_file

    from bequest.config import load_config
    from bequest.pipeline import run_recipe

    student = {"name": "frozen", "layers": 2, "init": "lower", "freeze": {"prefixes": ["embeddings"]},
               "objectives": {"kd": {}, "cls_cosine": {"weight": 0.5}},
               "train": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3}}
    recipe = tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="sst2_smoothed", plugins=["plugins.example"],
                         students=[student])
    config = load_config(recipe)  # imports the plugin, then validates its keys like built-in ones
    import plugins.example as example

    calls = []
    real_loss = example.SmoothedClassification.loss

    def spy(self, logits, labels, mask=None):
        calls.append(len(labels))
        return real_loss(self, logits, labels, mask)

    monkeypatch.setattr(example.SmoothedClassification, "loss", spy)
    results = run_recipe(config)
    row = results["students"]["frozen"]
    assert results["task"] == "sst2_smoothed" and "accuracy" in row["dev"]
    assert "lower + frozen embeddings" in row["init"] and row["frozen"] == ["embeddings"]
    assert row["objectives"] == "1*kd(alpha=0.5, T=2) + 0.5*cls_cosine"
    # the kind's loss, at every step of the teacher's fine-tuning and, inside kd, of the student's training
    examples = json.loads((tmp_path / "run" / "environment.json").read_text())["train_examples"]
    assert len(calls) == 2 * math.ceil(examples / 16) and set(calls[:-1]) == {16}
    teacher = load_file(str(Path(results["teacher"]["path"]) / "model.safetensors"))
    exported = load_file(str(tmp_path / "run" / "frozen" / "model.safetensors"))
    embeddings = [k for k in exported if ".embeddings." in k]
    assert embeddings and all(torch.equal(exported[k], teacher[k]) for k in embeddings)  # frozen: as inherited
    assert not torch.equal(exported["bert.encoder.layer.0.attention.self.query.weight"],
                           teacher["bert.encoder.layer.0.attention.self.query.weight"])  # the rest trained


def test_a_missing_plugin_is_one_clear_line(tmp_path):
    from bequest.config import parse_config

    with pytest.raises(BequestError, match=r"^recipe: plugins: cannot import 'no_such_plugin' .*PYTHONPATH$"):
        parse_config({"plugins": ["no_such_plugin"], "task": "sst2"})
