"""Your own data: text classification from a CSV/TSV/JSONL file with named columns, labels read from it."""

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import tiny_recipe
from safetensors.torch import load_file

from bequest.config import load_config
from bequest.errors import BequestError
from bequest.pipeline import run_recipe
from bequest.workload import workload


def _own_files(glue, **columns):
    files = {"train": str(glue / "SST-2" / "train.tsv"), "validation": str(glue / "SST-2" / "dev.tsv"),
             "text_column": "sentence", "label_column": "label", "max_length": 32}
    return {**files, **columns}


def test_text_classification_on_sst2s_files_gives_the_same_models_as_the_sst2_preset(tmp_path, tiny_teacher, tiny_glue):
    (tmp_path / "preset").mkdir()
    preset = run_recipe(load_config(tiny_recipe(tmp_path / "preset", tiny_teacher, tiny_glue)))
    (tmp_path / "generic").mkdir()
    generic = run_recipe(load_config(tiny_recipe(tmp_path / "generic", tiny_teacher, tiny_glue, task="text-classification",
                                                 data=_own_files(tiny_glue))))
    for folder in ("student",):
        first = load_file(str(tmp_path / "preset" / "run" / folder / "model.safetensors"))
        second = load_file(str(tmp_path / "generic" / "run" / folder / "model.safetensors"))
        assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert generic["students"]["student"]["dev"]["accuracy"] == preset["students"]["student"]["dev"]["accuracy"]
    assert {"f1_macro", "f1", "matthews_correlation"} <= set(generic["students"]["student"]["dev"])


def test_a_csv_of_named_labels_without_a_validation_file_exports_a_model_that_prints_the_names(tmp_path, tiny_teacher,
                                                                                            tiny_glue):
    from transformers import pipeline

    rows = [line.rstrip("\n").split("\t") for line in (tiny_glue / "SST-2" / "train.tsv").read_text().splitlines()[1:]]
    names = ["negative", "positive"]
    lines = ["review,stars"] + ['"{}",{}'.format(text.replace('"', "'"), names[int(label)] if i % 5 else "mixed")
                                for i, (text, label) in enumerate(rows)]
    (tmp_path / "reviews.csv").write_text("\n".join(lines) + "\n")
    data = {"train": str(tmp_path / "reviews.csv"), "text_column": "review", "label_column": "stars",
            "validation_fraction": 0.25, "max_length": 32}
    results = run_recipe(load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="text-classification", data=data)))
    folder = tmp_path / "run" / "student"
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {"0": "mixed", "1": "negative", "2": "positive"}
    labels = ["mixed" if i % 5 == 0 else names[int(label)] for i, (_, label) in enumerate(rows)]
    held = sum(int(round(0.25 * labels.count(name))) for name in set(labels))  # 25% of each class
    environment = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert environment["dev_examples"] == {"validation": held} and environment["train_examples"] == len(rows) - held
    assert "f1" not in results["students"]["student"]["dev"]  # three classes: no binary F1
    predicted = pipeline("text-classification", model=str(folder))(["a charming and affecting journey"])
    assert predicted[0]["label"] in {"mixed", "negative", "positive"}


@pytest.mark.parametrize("edit, message", [
    ({"text_column": "review"}, r"data.train .*train.tsv has no column 'review' \(data.text_column\); its columns are sentence, label"),
    ({"train": "missing.csv"}, r"data.train: missing.csv not found"),
    ({"train": "data.xlsx"}, r"data.train: data.xlsx is a .xlsx file: give one of .csv, .tsv, .json, .jsonl, .parquet"),
    ({"validation": None, "validation_fraction": 1.5}, r"validation_fraction"),
])
def test_bad_own_data_is_one_line_naming_the_file_and_the_fix(tmp_path, tiny_teacher, tiny_glue, edit, message):
    with pytest.raises(BequestError, match=message):
        config = load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="text-classification",
                                         data=_own_files(tiny_glue, **edit)))
        workload(config)


def test_a_validation_label_never_seen_in_training_is_refused(tmp_path, tiny_teacher, tiny_glue):
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"text": f"text {i}", "label": ["a", "b"][i % 2]}) + "\n"
                                                  for i in range(20)))
    (tmp_path / "dev.jsonl").write_text(json.dumps({"text": "x", "label": "c"}) + "\n")
    data = {"train": str(tmp_path / "train.jsonl"), "validation": str(tmp_path / "dev.jsonl")}
    config = load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="text-classification", data=data))
    with pytest.raises(BequestError, match=r"data.validation: label 'c' never occurs in data.train \(its labels: a, b\)"):
        workload(config)


def test_generic_and_preset_data_keys_do_not_mix(tmp_path, tiny_teacher, tiny_glue):
    with pytest.raises(BequestError, match="data.train: task text-classification reads your own files"):
        load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="text-classification"))
    with pytest.raises(BequestError, match="data.train, data.validation and data.test are for task: text-classification"):
        load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, data={"train": "x.csv"}))


def test_hub_data_is_loaded_by_id_config_and_split_and_an_unreachable_hub_is_one_line(tmp_path, tiny_teacher, tiny_glue,
                                                                                     monkeypatch):
    import datasets

    calls = []

    def fake_hub(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        if path == "nobody/offline":
            raise ConnectionError("the hub cannot be reached\nsecond line")
        return datasets.Dataset.from_dict({"content": [f"text {i}" for i in range(30)], "topic": ["a", "b", "c"] * 10})

    monkeypatch.setattr(datasets, "load_dataset", fake_hub)
    data = {"train": "hub:someone/topics", "validation": "hub:someone/topics", "hub_config": "en", "validation_split": "dev",
            "text_column": "content", "label_column": "topic"}
    work = workload(load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="text-classification", data=data)))
    assert work.task.label_names == ("a", "b", "c") and work.task.num_labels == 3
    assert calls == [("someone/topics", "en", "train"), ("someone/topics", "en", "dev")]
    data["train"] = "hub:nobody/offline"
    with pytest.raises(BequestError, match=r"^data.train: cannot load hub:nobody/offline \(ConnectionError: the hub cannot be "
                                           r"reached\): check the id"):
        workload(load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="text-classification", data=data)))


def test_examples_cut_at_max_length_are_counted(tmp_path, tiny_teacher, tiny_glue):
    from transformers import AutoTokenizer

    config = load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="text-classification",
                                     data=_own_files(tiny_glue, max_length=12)))
    work = workload(config)
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher)
    work.load_data(tokenizer)
    rows = [line.split("\t")[0] for line in (tiny_glue / "SST-2" / "train.tsv").read_text().splitlines()[1:]]
    longer = sum(len(tokenizer(text)["input_ids"]) >= 12 for text in rows)
    assert 0 < longer < len(rows) and work.sizes()["examples_at_max_length"]["train"] == longer


def test_a_test_file_is_scored_once_at_the_end_and_eval_metric_picks_the_main_score(tmp_path, tiny_teacher, tiny_glue, cli):
    from sklearn.metrics import f1_score
    from transformers import pipeline

    sst2 = tiny_glue / "SST-2"
    data = _own_files(tiny_glue, validation=str(sst2 / "dev.tsv"), test=str(sst2 / "train.tsv"), max_length=12)
    recipe = tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="text-classification", data=data,
                         eval={"latency_repeats": 2, "metric": "f1_macro"})
    result = cli.run(["run", str(recipe)], tmp_path)
    assert result.returncode == 0, result.stderr
    header = result.stdout[result.stdout.index("┏"):result.stdout.index("┡")]  # rich wraps a header over lines
    assert "test" in header and "f1_macro" in header and "accuracy" not in header
    assert re.search(r"\d+ of 160 train, \d+ of 48 validation, \d+ of 160 test examples reach data.max_length 12",
                     " ".join(result.stderr.split()))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["main_metric"] == "f1_macro"
    rows = [line.split("\t") for line in (sst2 / "train.tsv").read_text().splitlines()[1:]]
    folder = str(tmp_path / "run" / "student")
    predicted = pipeline("text-classification", model=folder, tokenizer=folder)([text for text, _ in rows], truncation=True,
                                                                                 max_length=12)
    gold = [int(label) for _, label in rows]
    expected = f1_score(gold, [int(p["label"]) for p in predicted], average="macro")
    assert results["students"]["student"]["test"]["f1_macro"] == pytest.approx(expected, abs=1e-6)
    assert set(results["teacher"]["test"]) == set(results["teacher"]["dev"])
    assert "| metric | dev | test |" in (tmp_path / "run" / "student" / "README.md").read_text()
    history = json.loads((tmp_path / "run" / "logs" / "student.json").read_text())
    assert all("f1_macro_test" not in row and "test" not in row for row in history)  # never scored while training
    # re-scored from the data its record names, from another folder: the same scores on both splits
    for split, key in (("test", "test"), ("validation", "dev")):
        done = cli.run(["evaluate", folder, "--split", split], tmp_path / "cache")
        assert done.returncode == 0, done.stderr
        stem = "eval_text-classification" + ("_test" if split == "test" else "")
        assert json.loads((Path(folder) / f"{stem}.json").read_text())[key] == results["students"]["student"][key]
    other = tmp_path / "other.yaml"
    other.write_text(recipe.read_text().replace(str(sst2 / "train.tsv"), str(tiny_glue / "CoLA" / "train.tsv")))
    refused = cli.run(["evaluate", folder, "--recipe", str(other), "--output", str(tmp_path / "other.json")], tmp_path)
    assert refused.returncode != 0 and "has no column 'sentence'" in refused.stderr


def test_an_eval_metric_the_task_does_not_have_is_one_line(tmp_path, tiny_teacher, tiny_glue):
    config = load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="text-classification", data=_own_files(tiny_glue),
                                     eval={"metric": "pearson"}))
    with pytest.raises(BequestError, match=r"eval.metric: 'pearson' is not a metric of text-classification: use one of "
                                           r"accuracy, f1_macro, f1, matthews_correlation"):
        workload(config)


def test_own_files_are_tokenised_into_a_cached_arrow_table_with_the_presets_content(tmp_path, tiny_teacher, tiny_glue):
    from transformers import AutoTokenizer

    from bequest.data.table_features import TableEncoded

    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher)
    generic = workload(load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="text-classification",
                                               data=_own_files(tiny_glue))))
    generic.load_data(tokenizer)
    assert isinstance(generic.train, TableEncoded)
    cache = generic.train.table.cache_files[0]["filename"]
    assert cache.startswith(str(tmp_path / "cache" / "datasets"))  # under bequest's cache dir, named by fingerprint
    written = Path(cache).stat().st_mtime_ns
    again = workload(load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="text-classification",
                                             data=_own_files(tiny_glue))))
    again.load_data(tokenizer)
    assert again.train.table.cache_files[0]["filename"] == cache and Path(cache).stat().st_mtime_ns == written
    preset = workload(load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue)))
    preset.load_data(tokenizer)
    assert type(preset.train) is not TableEncoded
    assert generic.train.fingerprint() == preset.train.fingerprint()  # the same content, whatever holds it
    indices = [5, 0, 77, 3]
    for key, value in preset.train.batch(indices, 0).items():
        assert torch.equal(generic.train.batch(indices, 0)[key], value)
    assert generic.train.select(indices).lengths == [preset.train.lengths[i] for i in indices]
    flipped = preset.train.select(range(len(preset.train)))
    flipped.labels[3] = 1 - flipped.labels[3]
    assert flipped.fingerprint() != preset.train.fingerprint()
