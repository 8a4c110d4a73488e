"""The quickstart's path with the real pretrained MiniLM teacher and the real SST-2 files, kept short."""

import json

from conftest import REPO_ROOT

from bequest.config import load_config
from bequest.pipeline import run_recipe
from bequest.recipe_files import parse_assignment


def test_quickstart_recipe_runs_on_real_teacher_and_data(shared_data, tmp_path):
    overrides = [
        f"data.dir={shared_data / 'glue'}",
        f"output_dir={tmp_path / 'run'}",
        f"cache_dir={tmp_path / 'cache'}",
        "data.max_train_examples=512",
        "data.max_length=32",
        "teacher.finetune.epochs=2",
        "teacher.finetune.min_steps=null",
        "students.0.train.epochs=1",
        "eval.latency_repeats=5",
    ]
    config = load_config(REPO_ROOT / "recipes" / "quickstart.yaml", [parse_assignment(o) for o in overrides])
    results = run_recipe(config)
    teacher, student = results["teacher"], results["students"]["student"]
    assert teacher["parameters"] == 22_713_986 and teacher["num_layers"] == 6  # MiniLM-L6 + a 2-way head
    assert student["num_layers"] == 3 and student["layers_from"] == [0, 1, 2]
    # 512 examples are enough to move a pretrained encoder well above chance on all 872 dev sentences
    assert teacher["dev"]["accuracy"] > 0.6
    assert student["latency_ms"] < teacher["latency_ms"]
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert env["dev_examples"] == {"dev": 872} and env["train_examples"] == 512
