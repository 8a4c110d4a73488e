"""Multi-label text classification: lists of labels (or a separator) make sigmoid heads, BCE and KD on
per-label sigmoids, scored by micro/macro F1; the export runs in a plain transformers pipeline."""

import json

import numpy as np
import pytest
import torch
from conftest import tiny_recipe

from bequest.config import load_config
from bequest.errors import BequestError
from bequest.kinds.multi_label import bernoulli_kl
from bequest.workload import workload


def _label_sets(glue, limit=None):
    """SST-2's rows with label sets: its sentiment, plus 'long' for sentences of more than 12 words."""
    rows = [line.split("\t") for line in (glue / "SST-2" / "train.tsv").read_text().splitlines()[1:]][:limit]
    return [(text, [["negative", "positive"][int(label)]] + (["long"] if len(text.split()) > 12 else []))
            for text, label in rows]


def test_bernoulli_kl_is_the_per_label_kl_of_the_softened_sigmoids():
    student, teacher = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    p, q = torch.sigmoid(teacher / 2), torch.sigmoid(student / 2)
    expected = (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).mean() * 4
    assert torch.allclose(bernoulli_kl(student, teacher, 2.0), expected)
    assert bernoulli_kl(teacher, teacher, 3.0).abs().item() < 1e-12


def test_a_jsonl_of_label_lists_distils_a_sigmoid_student_a_plain_pipeline_scores(tmp_path, tiny_teacher, tiny_glue, cli):
    from sklearn.metrics import f1_score
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    dev, data = _write_label_sets(tmp_path, tiny_glue)
    result = cli.run(["run", str(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="text-classification", data=data))],
                     tmp_path)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "run" / "student"
    config = json.loads((folder / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert config["id2label"] == {"0": "long", "1": "negative", "2": "positive"}
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["main_metric"] == "f1_micro"
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        logits = model(**tokenizer([t for t, _ in dev], padding=True, truncation=True, max_length=32,
                                   return_tensors="pt")).logits
    names = ["long", "negative", "positive"]
    gold = np.array([[name in labels for name in names] for _, labels in dev])
    predicted = (torch.sigmoid(logits) > 0.5).numpy()
    scores = results["students"]["student"]["dev"]
    assert scores["f1_micro"] == pytest.approx(f1_score(gold, predicted, average="micro", zero_division=0), abs=1e-6)
    assert scores["f1_macro"] == pytest.approx(f1_score(gold, predicted, average="macro", zero_division=0), abs=1e-6)
    assert scores["accuracy"] == pytest.approx((gold == predicted).all(axis=1).mean(), abs=1e-6)
    every = pipeline("text-classification", model=str(folder), top_k=None)([dev[0][0]], truncation=True, max_length=32)[0]
    by_name = {entry["label"]: entry["score"] for entry in every}
    assert by_name.keys() == set(names)
    assert by_name["long"] == pytest.approx(torch.sigmoid(logits[0, 0]).item(), abs=1e-5)  # a sigmoid, not a softmax
    assert sum(by_name.values()) != pytest.approx(1.0, abs=1e-3)
    assert "top_k=None" in (folder / "README.md").read_text()


def _write_label_sets(folder, glue):
    rows = _label_sets(glue)
    for name, part in (("train", rows[:120]), ("dev", rows[120:])):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps({"text": t, "tags": s}) + "\n" for t, s in part))
    return rows[120:], {"train": str(folder / "train.jsonl"), "validation": str(folder / "dev.jsonl"),
                        "label_column": "tags", "max_length": 32}


def _exported_f1_micro(folder, dev) -> float:
    """The export scored by transformers alone: a sigmoid per label, over 0.5."""
    from sklearn.metrics import f1_score
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    with torch.no_grad():
        logits = model(**AutoTokenizer.from_pretrained(folder)([t for t, _ in dev], padding=True, truncation=True,
                                                                max_length=32, return_tensors="pt")).logits
    gold = np.array([[name in labels for name in names] for _, labels in dev])
    return f1_score(gold, (torch.sigmoid(logits) > 0.5).numpy(), average="micro", zero_division=0)


def test_every_initialisation_method_distils_a_multi_label_student(tmp_path, tiny_teacher, tiny_glue, cli):
    from test_architectures import EVERY_METHOD

    dev, data = _write_label_sets(tmp_path, tiny_glue)
    students = [{**s, "train": {**s["train"], "epochs": 2}} if "wid" in s else s for s in EVERY_METHOD]  # 16 WID updates
    recipe = tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="text-classification", data=data, students=students)
    result = cli.run(["run", str(recipe)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    for student in EVERY_METHOD:
        folder = tmp_path / "run" / student["name"]
        config = json.loads((folder / "config.json").read_text())
        assert config["problem_type"] == "multi_label_classification", student["name"]
        assert config["id2label"] == {"0": "long", "1": "negative", "2": "positive"}, student["name"]
        reported = results["students"][student["name"]]["dev"]["f1_micro"]
        assert _exported_f1_micro(folder, dev) == pytest.approx(reported, abs=1e-6), student["name"]
    assert results["students"]["etd"]["hidden_size"] == results["students"]["wid"]["hidden_size"] == 16


def test_a_killed_multi_label_wid_run_merges_with_the_runs_classes(tmp_path, tiny_teacher, tiny_glue, monkeypatch):
    from transformers import AutoConfig
    from typer.testing import CliRunner

    import bequest.train.loop as loop
    from bequest.cli import app
    from bequest.pipeline import run_recipe

    dev, data = _write_label_sets(tmp_path, tiny_glue)
    student = {"name": "wid", "layers": 2, "init": "lower", "wid": {"hidden_size": 16, "w_step": 1},
               "train": {"epochs": 2, "batch_size": 16, "learning_rate": 1e-3, "checkpoint_every": 5}}
    real_save = loop._save_checkpoint

    def save_then_die(directory, *args):
        real_save(directory, *args)
        if "checkpoints/wid" in str(directory):  # the student's first, not the teacher's
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_save_checkpoint", save_then_die)
    recipe = tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="text-classification", data=data, students=[student])
    with pytest.raises(KeyboardInterrupt):
        run_recipe(load_config(recipe))
    merged = CliRunner().invoke(app, ["merge", str(tmp_path / "run"), "--output", str(tmp_path / "merged")])
    assert merged.exit_code == 0, merged.output
    config = AutoConfig.from_pretrained(tmp_path / "merged")
    assert config.problem_type == "multi_label_classification" and config.num_labels == 3
    assert config.id2label == {0: "long", 1: "negative", 2: "positive"}
    assert 0.0 <= _exported_f1_micro(tmp_path / "merged", dev) <= 1.0  # it loads and runs as a plain model


def test_a_separator_in_a_csv_makes_the_same_task_as_lists(tmp_path, tiny_teacher, tiny_glue):
    rows = _label_sets(tiny_glue, 60)
    (tmp_path / "train.csv").write_text("text,tags\n" + "".join('"{}",{}\n'.format(t.replace('"', "'"), "|".join(s))
                                                                for t, s in rows))
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"text": t, "tags": s}) + "\n" for t, s in rows))
    tasks = []
    for source, extra in (("train.csv", {"label_separator": "|"}), ("train.jsonl", {})):
        data = {"train": str(tmp_path / source), "label_column": "tags", "validation_fraction": 0.2, **extra}
        tasks.append(workload(load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="text-classification",
                                                      data=data))).task)
    assert tasks[0] == tasks[1] and tasks[0].multi_label and tasks[0].label_names == ("long", "negative", "positive")


@pytest.mark.parametrize("train_labels, dev_labels, message", [
    ([["a"], "b"] * 10, None, r"data.train .*train.jsonl: the label column mixes list and str values: give every row the "
                              r"same kind of label \(for several labels a row, lists, or name data.label_separator\)"),
    ([["a"], ["a", "b"]] * 10, ["a", "b"], r"data.validation .*dev.jsonl: its labels are one class a row but "
                                           r"data.train's are lists of labels: give every file the same kind of label"),
    ([["a"], ["a", "b"]] * 10, [["c"]], r"data.validation: label 'c' never occurs in data.train \(its labels: a, b\)"),
    (["x", "y"] * 10, [1.5, 2.5], r"its labels are scores but data.train's are one class a row"),
])
def test_mixed_label_kinds_are_one_line(tmp_path, tiny_teacher, tiny_glue, train_labels, dev_labels, message):
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"text": f"text {i}", "label": v}) + "\n"
                                                  for i, v in enumerate(train_labels)))
    data = {"train": str(tmp_path / "train.jsonl")}
    if dev_labels is not None:
        (tmp_path / "dev.jsonl").write_text("".join(json.dumps({"text": "x", "label": v}) + "\n" for v in dev_labels))
        data["validation"] = str(tmp_path / "dev.jsonl")
    config = load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="text-classification", data=data))
    with pytest.raises(BequestError, match=message):
        workload(config)
