"""What a run may touch and what it may trust: run directories, caches, concurrent runs, re-scoring.

Each test runs the real `bequest` command on the tiny teacher and real GLUE rows, as a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_recipe
from safetensors import safe_open
from safetensors.numpy import save_file
from safetensors.torch import load_file

from bequest.run_dir import MARKER

BEQUEST = str(Path(sys.executable).parent / "bequest")


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return result


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def same_weights(a: Path, b: Path) -> bool:
    first, second = weights(a), weights(b)
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def warnings(result: subprocess.CompletedProcess) -> list[str]:
    """The run's warnings but the one saying the tiny random teacher is no better than its baseline."""
    return [line for line in result.stderr.splitlines() if line.startswith("warning: ") and "majority class" not in line]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_teacher, tiny_glue, cli) -> Path:
    """One tiny run to the end; its cache is copied by the tests that damage caches."""
    folder = tmp_path_factory.mktemp("reference")
    ok(cli.run(["run", tiny_recipe(folder, tiny_teacher, tiny_glue)], folder))
    return folder


def _results(folder: Path) -> dict:
    return json.loads((folder / "run" / "results.json").read_text())


def test_overwrite_removes_only_what_bequest_wrote(reference, tmp_path, tiny_teacher, tiny_glue, cli):
    shutil.copytree(reference / "run", tmp_path / "run")
    shutil.copytree(reference / "cache", tmp_path / "cache")
    (tmp_path / "run" / "thesis.tex").write_text("\\documentclass{article}\n")
    (tmp_path / "run" / "my-notes").mkdir()
    (tmp_path / "run" / "my-notes" / "todo.txt").write_text("read the results\n")
    old_id = json.loads((tmp_path / "run" / MARKER).read_text())["run_id"]
    ok(cli.run(["run", tiny_recipe(tmp_path, tiny_teacher, tiny_glue), "--overwrite"], tmp_path))
    assert (tmp_path / "run" / "thesis.tex").read_text() == "\\documentclass{article}\n"
    assert (tmp_path / "run" / "my-notes" / "todo.txt").read_text() == "read the results\n"
    assert json.loads((tmp_path / "run" / MARKER).read_text())["run_id"] != old_id
    assert same_weights(tmp_path / "run" / "student", reference / "run" / "student")


def test_the_teacher_cache_key_covers_the_labels(reference, tmp_path, tiny_teacher, tiny_glue, cli):
    """Flip every training label: the teacher fine-tuned on the old labels must not be reused."""
    glue = tmp_path / "glue"
    shutil.copytree(tiny_glue / "SST-2", glue / "SST-2")
    train = glue / "SST-2" / "train.tsv"
    header, *rows = train.read_text(encoding="utf-8").splitlines()
    flipped = [f"{row.rsplit(chr(9), 1)[0]}\t{1 - int(row.rsplit(chr(9), 1)[1])}" for row in rows]
    train.write_text("\n".join([header, *flipped]) + "\n", encoding="utf-8")
    shutil.copytree(reference / "cache", tmp_path / "cache")
    ok(cli.run(["run", tiny_recipe(tmp_path, tiny_teacher, glue)], tmp_path))
    teacher = _results(tmp_path)["teacher"]
    assert teacher["cache_hit"] is False and teacher["path"] != _results(reference)["teacher"]["path"]
    entries = [p for p in (tmp_path / "cache" / "teachers").iterdir() if p.is_dir()]
    assert len(entries) == 2 and all(p.name.startswith("sst2-") for p in entries)


def test_a_damaged_cached_teacher_is_reported_and_rebuilt(reference, tmp_path, tiny_teacher, tiny_glue, cli):
    shutil.copytree(reference / "cache", tmp_path / "cache")
    cached = Path(_results(reference)["teacher"]["path"].replace(str(reference), str(tmp_path)))
    model = cached / "model.safetensors"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    result = ok(cli.run(["run", tiny_recipe(tmp_path, tiny_teacher, tiny_glue)], tmp_path))
    assert len(warnings(result)) == 1 and "cached teacher is damaged" in warnings(result)[0], result.stderr[-2000:]
    assert _results(tmp_path)["teacher"]["cache_hit"] is False
    assert same_weights(cached, Path(_results(reference)["teacher"]["path"]))  # fine-tuned again, bit for bit
    assert same_weights(tmp_path / "run" / "student", reference / "run" / "student")


@pytest.mark.parametrize("damage", ["other numbers", "another entry's file", "truncated"])
def test_a_damaged_logits_cache_is_reported_and_rebuilt(reference, tmp_path, tiny_teacher, tiny_glue, damage, cli):
    shutil.copytree(reference / "cache", tmp_path / "cache")
    path = next((tmp_path / "cache" / "logits").glob("*.safetensors"))
    with safe_open(str(path), "np") as handle:
        metadata, logits = handle.metadata(), handle.get_tensor("logits")
    if damage == "other numbers":  # a valid file of the right shape that says what it held
        save_file({"logits": logits + 0.5}, str(path), metadata=metadata)
    elif damage == "another entry's file":
        save_file({"logits": np.zeros_like(logits)}, str(path), metadata={**metadata, "key": "0" * 20})
    else:
        path.write_bytes(path.read_bytes()[:100])
    result = ok(cli.run(["run", tiny_recipe(tmp_path, tiny_teacher, tiny_glue)], tmp_path))
    assert len(warnings(result)) == 1 and str(path) in warnings(result)[0] and "rebuilding" in warnings(result)[0]
    assert same_weights(tmp_path / "run" / "student", reference / "run" / "student")


def test_resume_accepts_folders_spelled_relative_or_absolute(reference, tmp_path, tiny_teacher, tiny_glue, cli):
    recipe = tiny_recipe(tmp_path, tiny_teacher, tiny_glue, cache_dir=str(reference / "cache"))
    raw = yaml.safe_load(recipe.read_text())
    del raw["output_dir"]
    recipe.write_text(yaml.safe_dump(raw))
    ok(cli.run(["run", recipe, "--output-dir", "run"], tmp_path))
    data = os.path.relpath(tiny_glue, tmp_path)  # the data folder spelled relative too, where the recipe has it absolute
    resumed = ok(cli.run(["run", recipe, "--output-dir", tmp_path / "run", "--data-dir", data, "--resume"], tmp_path))
    assert "already exported" in resumed.stdout + resumed.stderr


def test_two_runs_sharing_one_cache_fine_tune_the_teacher_once(tmp_path, tiny_teacher, tiny_glue):
    """Started together on an empty cache: one fine-tunes the teacher while the other waits for it."""
    processes = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        recipe = tiny_recipe(tmp_path / name, tiny_teacher, tiny_glue, cache_dir=str(tmp_path / "cache"))
        processes.append(subprocess.Popen([BEQUEST, "run", str(recipe)], cwd=tmp_path / name, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
    hits = sorted(_results(tmp_path / name)["teacher"]["cache_hit"] for name in ("a", "b"))
    assert hits == [False, True]
    assert same_weights(tmp_path / "a" / "run" / "student", tmp_path / "b" / "run" / "student")
    entries = [p.name for p in (tmp_path / "cache" / "teachers").iterdir()]
    assert len(entries) == 1 and not entries[0].startswith(".") and not entries[0].endswith(".partial")


def test_evaluate_scores_a_fine_tuned_teacher_as_the_run_did(reference, tmp_path, tiny_glue, cli):
    """The cached teacher folder records the run's max length (32 in the tiny recipe), not the default 128."""
    teacher = tmp_path / "teacher"
    shutil.copytree(_results(reference)["teacher"]["path"], teacher)
    ok(cli.run(["evaluate", teacher, "--task", "sst2", "--data-dir", tiny_glue], tmp_path))
    scores = json.loads((teacher / "eval_sst2.json").read_text())
    assert scores["max_length"] == 32 and scores["dev"] == _results(reference)["teacher"]["dev"]


def test_evaluate_on_another_task_than_the_model_was_trained_on_warns(reference, tmp_path, tiny_glue, cli):
    result = ok(cli.run(["evaluate", reference / "run" / "student", "--task", "mrpc", "--data-dir", tiny_glue,
                        "--output", tmp_path / "mrpc.json"], tmp_path))
    assert len(warnings(result)) == 1 and "trained on sst2" in warnings(result)[0]
