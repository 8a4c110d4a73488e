"""ETD through recipes and the `bequest extract` command, on the tiny teacher and real data."""

import json

import pytest
import torch
from conftest import tiny_recipe
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForSequenceClassification
from typer.testing import CliRunner

from bequest.cli import app
from bequest.config import load_config
from bequest.pipeline import run_recipe

EXTRACT = {"hidden_size": 16, "scorer": "taylor", "batches": 3, "batch_size": 8}
STUDENT = {"name": "etd", "layers": 2, "init": "stride", "extract": EXTRACT,
           "objectives": {"kd": {}, "hidden": {}}, "train": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3}}


@pytest.fixture(scope="module")
def task_run(tmp_path_factory, tiny_teacher, tiny_glue):
    folder = tmp_path_factory.mktemp("etd")
    return folder, run_recipe(load_config(tiny_recipe(folder, tiny_teacher, tiny_glue, students=[STUDENT])))


def test_an_extracted_student_is_distilled_and_exported_at_its_shape(task_run):
    folder, results = task_run
    row = results["students"]["etd"]
    assert row["layers_from"] == [0, 2] and row["hidden_size"] == 16 and "ETD width extraction (taylor)" in row["init"]
    config = AutoConfig.from_pretrained(folder / "run" / "etd")
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.intermediate_size) == (2, 16, 1, 32)
    assert row["parameters"] < results["teacher"]["parameters"] / 2
    extraction = json.loads((folder / "run" / "logs" / "etd.extraction.json").read_text())
    assert extraction["kept"]["layers"] == [0, 2] and len(extraction["kept"]["hidden"]) == 16
    assert [len(h) for h in extraction["kept"]["heads"]] == [1, 1] and len(extraction["scores"]["hidden"]) == 32
    assert "hidden size 16" in (folder / "run" / "etd" / "README.md").read_text()


def test_bequest_extract_writes_the_same_student_before_distillation(task_run, tiny_teacher, tiny_glue, tmp_path):
    folder, _ = task_run
    # a cache of its own: the teacher is fine-tuned again (the same weights), which must not write into the run directory
    recipe = tiny_recipe(tmp_path, tiny_teacher, tiny_glue, students=[STUDENT], cache_dir=str(tmp_path / "cache"))
    runner = CliRunner()
    result = runner.invoke(app, ["extract", str(recipe), "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    extraction = json.loads((tmp_path / "out" / "extraction.json").read_text())
    logged = json.loads((folder / "run" / "logs" / "etd.extraction.json").read_text())
    assert extraction["kept"] == logged["kept"]  # the same teacher, batches and seed
    assert not (tmp_path / "run").exists()  # extract writes only --output, never into the recipe's run directory
    # the folder holds the teacher's own tensors at the kept indices
    student = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    teacher = load_file(str(next((folder / "cache" / "teachers").iterdir()) / "model.safetensors"))
    hidden, heads = torch.tensor(extraction["kept"]["hidden"]), extraction["kept"]["heads"][1]
    rows = torch.tensor([h * 16 + d for h in heads for d in range(16)])
    expected = teacher["bert.encoder.layer.2.attention.self.query.weight"][rows][:, hidden]
    assert torch.equal(student.bert.encoder.layer[1].attention.self.query.weight, expected)
    again = runner.invoke(app, ["extract", str(recipe), "--output", str(tmp_path / "out")])
    assert again.exit_code == 2 and "already exists" in again.output and "--overwrite" in again.output


def test_task_agnostic_etd_scores_with_a_fitted_mlm_head(tmp_path, tiny_teacher, shared_data):
    lines = (shared_data / "wiki" / "enwiki_sample.txt").open(encoding="utf-8").readlines()[:300]
    (tmp_path / "wiki.txt").write_text("".join(lines), encoding="utf-8")
    student = {"name": "general", "layers": 2, "init": "stride", "extract": {**EXTRACT, "head_steps": 4},
               "objectives": {"minilmv2": {"relation_heads": 4}}, "train": {"max_steps": 4, "batch_size": 8}}
    recipe = tiny_recipe(tmp_path, tiny_teacher, tmp_path, task=None, students=[student],
                         corpus={"files": [str(tmp_path / "wiki.txt")], "max_length": 64, "heldout_segments": 8})
    results = run_recipe(load_config(recipe))
    assert results["students"]["general"]["hidden_size"] == 16
    scores = json.loads((tmp_path / "run" / "logs" / "general.extraction.json").read_text())["scores"]
    assert all(value > 0 for value in scores["hidden"])  # real gradients reached every dimension
