"""WID through recipes, on the tiny teacher (hidden 32, 2 heads of 16, FFN 64, 4 layers) and real data."""

import json
import re

import pytest
from conftest import tiny_recipe
from transformers import AutoConfig
from typer.testing import CliRunner

from bequest.cli import app
from bequest.config import load_config
from bequest.errors import BequestError
from bequest.pipeline import run_recipe

WID = {"hidden_size": 16, "w_step": 1, "compactor_learning_rate": 0.005, "l2_lambda": 100}
STUDENT = {"name": "wid", "layers": 2, "init": "lower", "wid": WID, "objectives": {"kd": {}},
           "train": {"epochs": 2, "batch_size": 16, "learning_rate": 1e-4, "checkpoint_every": 7}}


@pytest.fixture(scope="module")
def task_run(tmp_path_factory, tiny_teacher, tiny_glue):
    folder = tmp_path_factory.mktemp("wid")
    return folder, run_recipe(load_config(tiny_recipe(folder, tiny_teacher, tiny_glue, students=[STUDENT])))


def test_a_wid_student_is_trained_merged_and_exported_at_the_target_shape(task_run):
    folder, results = task_run
    row = results["students"]["wid"]
    assert row["wid_merge_error"] < 1e-4  # merged and wrapped models, both in fp32, on the longest dev batch
    assert row["hidden_size"] == 16 and "WID compactors (dim-wise, to hidden 16)" in row["init"]
    config = AutoConfig.from_pretrained(folder / "run" / "wid")
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.intermediate_size) == (2, 16, 2, 32)
    # the exported folder is scored by itself, and scores what the wrapped model scored at the end of training
    history = json.loads((folder / "run" / "logs" / "wid.json").read_text())
    assert abs(history[-1]["accuracy"] - row["dev"]["accuracy"]) < 1e-9
    masks = [json.loads(line) for line in (folder / "run" / "logs" / "wid.wid_masks.jsonl").read_text().splitlines()]
    assert [m["update"] for m in masks] == list(range(1, 17))  # 20 steps (2 epochs of 10), an update per step
    assert len(masks[-1]["hidden"]) == 16 and all(len(a) == 16 for a in masks[-1]["attention"])


def test_a_wid_run_killed_mid_schedule_resumes_to_the_same_student(task_run, tiny_teacher, tiny_glue, tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file

    import bequest.train.loop as loop

    folder, reference = task_run
    real_save = loop._save_checkpoint

    def save_then_die(directory, *args):
        real_save(directory, *args)
        raise KeyboardInterrupt  # after the first checkpoint: step 7, masks of 6 updates

    monkeypatch.setattr(loop, "_save_checkpoint", save_then_die)
    config = load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, students=[STUDENT], cache_dir=str(folder / "cache")))
    with pytest.raises(KeyboardInterrupt):
        run_recipe(config)
    monkeypatch.setattr(loop, "_save_checkpoint", real_save)
    assert (tmp_path / "run" / "checkpoints" / "wid" / "stage-1" / "checkpoint-7").is_dir()
    # the killed run's checkpoint merges on its own: masks of 6 updates, round(6 * 8 / 16) = 3 of 16 dims per head gone
    runner = CliRunner()
    merged = runner.invoke(app, ["merge", str(tmp_path / "run"), "--output", str(tmp_path / "at-step-7")])
    assert merged.exit_code == 0, merged.output
    assert AutoConfig.from_pretrained(tmp_path / "at-step-7").hidden_size == 26
    assert json.loads((tmp_path / "at-step-7" / "wid.json").read_text())["step"] == 7
    resumed = run_recipe(config, resume=True)
    assert resumed["students"]["wid"]["dev"] == reference["students"]["wid"]["dev"]
    first = load_file(str(folder / "run" / "wid" / "model.safetensors"))
    second = load_file(str(tmp_path / "run" / "wid" / "model.safetensors"))
    assert all(torch.equal(first[k], second[k]) for k in first)
    # the updates the resumed run repeated after its checkpoint replace their lines: 16 updates, once each, as uninterrupted
    log = "logs/wid.wid_masks.jsonl"
    assert (tmp_path / "run" / log).read_text() == (folder / "run" / log).read_text()


@pytest.mark.parametrize("wid, epochs, message", [
    ({"hidden_size": 20, "strategy": "head"}, 2, "multiple of 16"),
    ({"hidden_size": 16, "w_step": 2}, 2, "after 16 mask updates of wid.w_step=2 steps (32 steps), but the student trains "
                                          "for 20: set wid.w_step to at most 1, or train longer"),
    ({"hidden_size": 16, "w_step": 1}, 1, "but the student trains for 10: train for at least 16 steps"),
])
def test_wid_errors_are_refused_before_anything_is_written(tiny_teacher, tiny_glue, tmp_path, wid, epochs, message):
    student = {**STUDENT, "wid": wid, "train": {**STUDENT["train"], "epochs": epochs}}
    with pytest.raises(BequestError, match=re.escape(message)):
        run_recipe(load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, students=[student])))
    assert not (tmp_path / "run").exists()


def test_task_agnostic_wid_with_mlm_gives_a_general_student(tmp_path, tiny_teacher, shared_data):
    lines = (shared_data / "wiki" / "enwiki_sample.txt").open(encoding="utf-8").readlines()[:300]
    (tmp_path / "wiki.txt").write_text("".join(lines), encoding="utf-8")
    student = {"name": "general", "layers": 2, "init": "lower", "wid": WID, "objectives": {"mlm": {}},
               "train": {"max_steps": 20, "batch_size": 8, "learning_rate": 1e-4}}
    recipe = tiny_recipe(tmp_path, tiny_teacher, tmp_path, task=None, students=[student],
                         corpus={"files": [str(tmp_path / "wiki.txt")], "max_length": 64, "heldout_segments": 8})
    row = run_recipe(load_config(recipe))["students"]["general"]
    assert row["hidden_size"] == 16 and row["wid_merge_error"] < 1e-4  # last hidden states of merged vs wrapped
    config = AutoConfig.from_pretrained(tmp_path / "run" / "general")
    assert (config.hidden_size, config.intermediate_size, config.architectures) == (16, 32, ["BertModel"])
