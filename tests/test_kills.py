"""A run killed anywhere resumes to the student an uninterrupted run gives, bit for bit.

One recipe with a teacher fine-tuned by bequest, a WID student and a two-stage student is run once
uninterrupted, and once through the `bequest` command SIGKILLed at each of the points below in turn
(kill_harness.py arms the kill),
every kill followed by `--resume` (which is killed at the next point): during the teacher's
fine-tuning, its checkpoint and cache writes, the logits cache, WID's training, mask log,
checkpoint and export, the two-stage student's stages and export, and the final measurement.
A last `--resume` finishes. SIGINT and SIGTERM stop a run with a line that says how to resume.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_recipe
from safetensors.torch import load_file

BEQUEST = str(Path(sys.executable).parent / "bequest")
STUDENTS = [
    {"name": "wid", "layers": 2, "init": "lower", "objectives": {"kd": {}},
     "wid": {"hidden_size": 16, "w_step": 1, "compactor_learning_rate": 0.005, "l2_lambda": 100},
     "train": {"epochs": 2, "batch_size": 16, "learning_rate": 1e-4, "checkpoint_every": 7}},
    {"name": "two-stage", "layers": 2, "init": "lower",
     "stages": [{"objectives": {"hidden": {}, "attention_mse": {}},
                 "train": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3, "checkpoint_every": 4}},
                {"objectives": {"kd": {}}, "train": {"epochs": 2, "batch_size": 16, "learning_rate": 1e-3, "checkpoint_every": 4}}]},
]
TEACHER = {"epochs": 2, "min_steps": None, "batch_size": 16, "learning_rate": 1e-3, "checkpoint_every": 3}

# (function whose n-th call in the process kills it, n, before/after the call): each is reached by the
# `--resume` that follows the previous kill. The tiny data: 160 examples, 10 steps an epoch.
KILL_POINTS = [
    ("bequest.kinds.classification:Classification.batch_loss", 5, "before"),  # teacher fine-tuning, step 5 (checkpoint at 3)
    ("bequest.train.loop:save_model", 1, "after"),  # teacher checkpoint 6: weights written, folder not renamed
    ("bequest.train.teacher:write_record", 1, "before"),  # the cached teacher's folder half-written
    ("bequest.io:save_file", 1, "after"),  # the teacher's logits: temporary file written, not moved in place
    ("bequest.train.distiller:Distiller.forward", 10, "before"),  # WID training, step 10 (checkpoint at 7)
    ("bequest.init.wid:write_text", 2, "before"),  # WID mask log, the second update after resuming
    ("bequest.train.loop:save_model", 1, "after"),  # WID checkpoint 10 half-written
    ("bequest.distil:write_model_card", 1, "before"),  # WID student's export half-written
    ("bequest.train.distiller:Distiller.forward", 3, "before"),  # two-stage, stage 1 step 3 (no checkpoint yet)
    ("bequest.distil:teacher_logits", 1, "before"),  # two-stage, between the stages
    ("bequest.train.distiller:Distiller.forward", 5, "before"),  # two-stage, stage 2 step 5 (checkpoint at 4)
    ("bequest.train.loop:save_model", 1, "after"),  # stage 2 checkpoint 8 half-written
    ("bequest.distil:write_model_card", 1, "before"),  # two-stage export half-written
    ("bequest.pipeline:latencies", 1, "before"),  # every student exported, results not yet written
]


def _recipe(folder: Path, teacher: Path, glue: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    recipe = tiny_recipe(folder, teacher, glue, students=STUDENTS)
    raw = yaml.safe_load(recipe.read_text())
    raw["teacher"]["finetune"] = TEACHER
    recipe.write_text(yaml.safe_dump(raw))
    return recipe


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}



def _same(a: Path, b: Path) -> bool:
    first, second = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_teacher, tiny_glue, cli) -> Path:
    folder = tmp_path_factory.mktemp("uninterrupted")
    done = cli.run(["run", _recipe(folder, tiny_teacher, tiny_glue)], folder, _env())
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


def _temporaries(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.endswith(".partial")]


def test_sigkill_at_each_point_then_resume_gives_the_uninterrupted_run(reference, tmp_path, tiny_teacher, tiny_glue, cli):
    """Each command is a process of its own (forked from the zygote, see zygote.py), killed by SIGKILL."""
    recipe = _recipe(tmp_path, tiny_teacher, tiny_glue)
    for number, (target, count, when) in enumerate(KILL_POINTS):
        resume = ["--resume"] if number else []
        killed = cli.run(["run", recipe, *resume], tmp_path, _env(), kill=f"{target}:{count}:{when}")
        assert killed.returncode == -signal.SIGKILL, (f"kill point {number} ({target} #{count}) was not reached: "
                                                      f"exit {killed.returncode}\n{killed.stderr[-3000:]}")
    done = cli.run(["run", recipe, "--resume"], tmp_path, _env())
    assert done.returncode == 0, done.stderr[-3000:]

    ours, theirs = json.loads((tmp_path / "run" / "results.json").read_text()), json.loads((reference / "run" / "results.json").read_text())
    assert Path(ours["teacher"]["path"]).name == Path(theirs["teacher"]["path"]).name  # the same cache key
    assert _same(Path(ours["teacher"]["path"]), Path(theirs["teacher"]["path"]))
    for name in ("wid", "two-stage"):
        assert _same(tmp_path / "run" / name, reference / "run" / name), name
        assert ours["students"][name]["dev"] == theirs["students"][name]["dev"]
    log = "logs/wid.wid_masks.jsonl"
    assert (tmp_path / "run" / log).read_text() == (reference / "run" / log).read_text()
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert _temporaries(tmp_path / "run", tmp_path / "cache") == []


@pytest.mark.parametrize(("sent", "code", "word"), [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_sigterm_and_sigint_stop_with_a_line_saying_how_to_resume(reference, tmp_path, tiny_teacher, tiny_glue, sent, code, word):
    recipe = _recipe(tmp_path, tiny_teacher, tiny_glue)
    raw = yaml.safe_load(recipe.read_text())
    raw["cache_dir"] = str(reference / "cache")  # the teacher is ready: the signal lands in a student's training
    recipe.write_text(yaml.safe_dump(raw))
    # a suite started in the background (`pytest &`) ignores SIGINT, and so would the child: give it the default
    process = subprocess.Popen([BEQUEST, "run", str(recipe)], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    checkpoints = tmp_path / "run" / "checkpoints" / "wid"
    deadline = time.time() + 300
    while time.time() < deadline and not list(checkpoints.rglob("checkpoint-*/.bequest-manifest.json")):
        time.sleep(0.05)
    process.send_signal(sent)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == code, stderr[-3000:]
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == f"{word}: run the same command with --resume to continue"
    done = subprocess.run([BEQUEST, "run", str(recipe), "--resume"], env=_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("wid", "two-stage"):
        assert _same(tmp_path / "run" / name, reference / "run" / name), name
