"""End to end on a tiny random teacher and real GLUE rows: run, export, reload, re-score, resume."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_recipe
from safetensors.torch import load_file

from bequest.config import load_config
from bequest.pipeline import run_recipe

BEQUEST = str(Path(sys.executable).parent / "bequest")


def _run(folder, teacher, glue, **extra):
    folder.mkdir(parents=True, exist_ok=True)
    return run_recipe(load_config(tiny_recipe(folder, teacher, glue, **extra)))


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_teacher, tiny_glue):
    folder = tmp_path_factory.mktemp("finished")
    return folder, _run(folder, tiny_teacher, tiny_glue)


def test_results_describe_teacher_and_student(finished):
    folder, results = finished
    on_disk = json.loads((folder / "run" / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    teacher, student = results["teacher"], results["students"]["student"]
    assert teacher["finetuned_by_bequest"] and teacher["num_layers"] == 4
    assert student["num_layers"] == 2 and student["layers_from"] == [0, 1]
    for row in (teacher, student):
        assert row["task"] == "sst2" and row["metrics"] == ["accuracy"]
        assert 0 <= row["dev"]["accuracy"] <= 1 and row["latency_ms"] > 0
    assert student["parameters"] < teacher["parameters"]
    assert student["speedup"] == pytest.approx(teacher["latency_ms"] / student["latency_ms"])
    assert results["latency"]["batch_size"] == 32
    env = json.loads((folder / "run" / "environment.json").read_text())
    assert env["seed"] == 7 and "torch" in env["packages"] and any(k.endswith("SST-2/train.tsv") for k in env["data_files"])
    assert yaml.safe_load((folder / "run" / "recipe.yaml").read_text())["students"][0]["init"] == "lower"
    history = json.loads((folder / "run" / "logs" / "student.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and "accuracy" in history[0]


def test_export_loads_without_bequest_and_rescores_exactly(finished, tiny_glue):
    folder, results = finished
    student = folder / "run" / "student"
    assert (student / "model.safetensors").is_file() and (student / "tokenizer.json").is_file()
    card = (student / "README.md").read_text()
    assert f"{results['students']['student']['dev']['accuracy']:.4f}" in card and "teacher layers [0, 1]" in card
    code = (
        "import sys, transformers\n"
        f"m = transformers.AutoModelForSequenceClassification.from_pretrained({str(student)!r})\n"
        "assert m.config.num_hidden_layers == 2 and 'bequest' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")
    out = subprocess.run([BEQUEST, "evaluate", str(student), "--task", "sst2", "--data-dir", str(tiny_glue)],
                         capture_output=True, text=True, check=True)
    scores = json.loads((student / "eval_sst2.json").read_text())["dev"]
    assert scores == results["students"]["student"]["dev"]
    assert f"accuracy: {scores['accuracy']:.4f}" in out.stdout


def test_teacher_is_fine_tuned_once_and_reused(finished, tiny_teacher, tiny_glue, tmp_path):
    folder, results = finished
    again = _run(tmp_path, tiny_teacher, tiny_glue, cache_dir=str(folder / "cache"))
    assert results["teacher"]["cache_hit"] is False and again["teacher"]["cache_hit"] is True
    assert again["teacher"]["dev"] == results["teacher"]["dev"]
    # the same seed gives the same student, bit for bit, whether or not the teacher came from the cache
    assert again["students"]["student"]["dev"] == results["students"]["student"]["dev"]
    first = load_file(str(folder / "run" / "student" / "model.safetensors"))
    second = load_file(str(tmp_path / "run" / "student" / "model.safetensors"))
    assert all(torch.equal(first[k], second[k]) for k in first)
    logits = list((folder / "cache" / "logits").glob("*.safetensors"))
    assert len(logits) == 1  # one dataset, one teacher: computed once


def test_a_fine_tuned_teacher_is_used_as_it_is(finished, tiny_glue, tmp_path):
    folder, results = finished
    again = _run(tmp_path, Path(results["teacher"]["path"]), tiny_glue)
    assert again["teacher"]["finetuned_by_bequest"] is False
    assert again["teacher"]["dev"] == results["teacher"]["dev"]


@pytest.mark.parametrize(("task", "metrics"), [("stsb", ["pearson", "spearmanr"]), ("mrpc", ["f1", "accuracy"]), ("cola", ["matthews_correlation"])])
def test_other_tasks_and_the_no_kd_baseline(task, metrics, tiny_teacher, tiny_glue, tmp_path):
    students = [{"name": "kd", "layers": 1, "init": "upper", "train": {"epochs": 1, "batch_size": 16}},
                {"name": "baseline", "layers": 1, "init": [3], "objectives": {"task": {}}, "train": {"epochs": 1, "batch_size": 16}}]
    results = _run(tmp_path, tiny_teacher, tiny_glue, task=task, students=students)
    assert list(results["students"]) == ["kd", "baseline"]
    assert results["students"]["kd"]["layers_from"] == results["students"]["baseline"]["layers_from"] == [3]
    for row in [results["teacher"], *results["students"].values()]:
        assert sorted(row["dev"]) == sorted(metrics)
    # same start, same seed: only the objective differs, and so must the weights
    kd = load_file(str(tmp_path / "run" / "kd" / "model.safetensors"))
    baseline = load_file(str(tmp_path / "run" / "baseline" / "model.safetensors"))
    assert not torch.equal(kd["classifier.weight"], baseline["classifier.weight"])


def test_mnli_scores_matched_and_mismatched(tiny_teacher, tmp_path):
    """MNLI has two dev files; both are scored, the second under its own key."""
    folder = tmp_path / "glue" / "MNLI"
    folder.mkdir(parents=True)
    header = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n"
    labels = ("entailment", "neutral", "contradiction")
    for split, rows in (("train", 48), ("dev_matched", 12), ("dev_mismatched", 9)):
        lines = [f"{i}\tp\tq\tg\tb\tb\tp\tp\tthe cat sat {i} times\ta cat sat {split}\t{labels[i % 3]}\t{labels[i % 3]}\n" for i in range(rows)]
        (folder / f"{split}.tsv").write_text(header + "".join(lines))
    results = _run(tmp_path, tiny_teacher, tmp_path / "glue", task="mnli")
    for row in (results["teacher"], results["students"]["student"]):
        assert sorted(row["dev"]) == ["accuracy", "accuracy_mismatched"]
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert env["dev_examples"] == {"dev_matched": 12, "dev_mismatched": 9}


TWO_STAGES = [{"name": "student", "layers": 2, "init": "uniform", "stages": [
    {"name": "intermediate", "objectives": {"hidden": {}, "attention_mse": {}, "minilmv2": {"weight": 0.5}},
     "data": {"max_examples": 40},
     "train": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3, "checkpoint_every": 4}},
    {"name": "prediction", "objectives": {"kd": {"alpha": 0.7, "temperature": 4}, "pkd": {"weight": 10, "mapping": [[1, 2]]}},
     "train": {"epochs": 2, "batch_size": 16, "learning_rate": 1e-3, "checkpoint_every": 4}}]}]


def test_two_stage_schedule_and_resume_inside_the_second_stage(finished, tiny_teacher, tiny_glue, tmp_path, monkeypatch):
    import bequest.train.loop as loop

    folder, _ = finished
    cache = str(folder / "cache")
    reference = _run(tmp_path / "reference", tiny_teacher, tiny_glue, cache_dir=cache, students=TWO_STAGES)
    history = json.loads((tmp_path / "reference" / "run" / "logs" / "student.json").read_text())
    assert [(h["stage"], h["epoch"]) for h in history] == [(1, 1), (2, 1), (2, 2)]
    assert [h["step"] for h in history] == [3, 10, 20]  # stage 1 sees 40 of the 160 examples: 3 batches of 16
    card = (tmp_path / "reference" / "run" / "student" / "README.md").read_text()
    assert "stage 1 (intermediate): 1*hidden + 1*attention_mse + 0.5*minilmv2" in card and "stage 2 (prediction)" in card

    real_save, saves = loop._save_checkpoint, []

    def save_then_die(directory, *args):
        real_save(directory, *args)
        saves.append(directory.name)
        if saves.count("stage-2") == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_save_checkpoint", save_then_die)
    (tmp_path / "killed").mkdir()
    config = load_config(tiny_recipe(tmp_path / "killed", tiny_teacher, tiny_glue, cache_dir=cache, students=TWO_STAGES))
    with pytest.raises(KeyboardInterrupt):
        run_recipe(config)
    monkeypatch.setattr(loop, "_save_checkpoint", real_save)
    first_environment = (tmp_path / "killed" / "run" / "environment.json").read_text()
    resumed = run_recipe(config, resume=True)
    assert resumed["students"]["student"]["dev"] == reference["students"]["student"]["dev"]
    assert (tmp_path / "killed" / "run" / "environment.json").read_text() == first_environment
    assert json.loads((tmp_path / "killed" / "run" / "environment.resumed-1.json").read_text())["seed"] == 7
    first = load_file(str(tmp_path / "reference" / "run" / "student" / "model.safetensors"))
    second = load_file(str(tmp_path / "killed" / "run" / "student" / "model.safetensors"))
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_a_mapping_to_a_missing_layer_is_refused_before_anything_is_written(tiny_teacher, tiny_glue, tmp_path):
    from bequest.errors import BequestError

    students = [{"name": "s", "layers": 2, "objectives": {"attention_kl": {"mapping": [[0, 7]]}}}]
    with pytest.raises(BequestError, match=r"students.0 \(s\): objective attention_kl: .*teacher layer 7, but the teacher has layers 0..3"):
        _run(tmp_path, tiny_teacher, tiny_glue, students=students)
    assert not (tmp_path / "run").exists()
