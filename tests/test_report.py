"""`bequest report` on two real tiny runs that differ only in their seed."""

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import tiny_recipe

from bequest.config import load_config
from bequest.errors import BequestError
from bequest.pipeline import run_recipe
from bequest.report import pareto_front, write_report

BEQUEST = str(Path(sys.executable).parent / "bequest")
TRAIN = {"epochs": 2, "batch_size": 16, "learning_rate": 1e-3}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_teacher, tiny_glue) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    students = [{"name": "lower", "layers": 2, "init": "lower", "train": TRAIN},
                {"name": "one", "layers": 1, "init": "upper", "train": TRAIN}]
    for seed in (1, 2):
        folder = root / f"seed-{seed}"
        folder.mkdir()
        run_recipe(load_config(tiny_recipe(folder, tiny_teacher, tiny_glue, seed=seed, students=students)))
    return root


def test_report_aggregates_over_seeds(runs, tmp_path):
    table = write_report([runs], tmp_path / "report", overwrite=False)
    results = [json.loads((runs / f"seed-{seed}" / "run" / "results.json").read_text()) for seed in (1, 2)]
    assert sorted(table["model"]) == ["(majority class)", "lower", "one", "teacher"] and set(table["runs"]) == {2}
    majority = table[table["model"] == "(majority class)"].iloc[0]  # the same dev set: the same score each seed
    assert majority["score_mean"] == pytest.approx(results[0]["baselines"]["majority class"]["dev"]["accuracy"])
    assert majority["score_std"] == 0.0
    for name in ("lower", "one"):
        scores = [r["students"][name]["dev"]["accuracy"] for r in results]
        retained = [r["students"][name]["dev"]["accuracy"] / r["teacher"]["dev"]["accuracy"] for r in results]
        row = table[table["model"] == name].iloc[0]
        assert row["score_mean"] == pytest.approx(statistics.mean(scores))
        assert row["score_std"] == pytest.approx(statistics.stdev(scores))
        assert row["retained"] == pytest.approx(statistics.mean(retained))
        assert row["speedup"] == pytest.approx(statistics.mean(r["students"][name]["speedup"] for r in results))
        assert row["parameters"] == results[0]["students"][name]["parameters"]
    csv = pd.read_csv(tmp_path / "report" / "report.csv")
    assert list(csv["model"]) == list(table["model"])
    assert "<table" in (tmp_path / "report" / "report.html").read_text()
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert f"{table.iloc[1]['score_mean']:.4f} ± {table.iloc[1]['score_std']:.4f}" in markdown
    assert f"| (majority class) | {majority['settings']} | 2 | accuracy {majority['score_mean']:.4f} ± 0.0000 | " in markdown
    for plot in ("pareto.png", "curves.png"):
        assert (tmp_path / "report" / plot).read_bytes()[:4] == b"\x89PNG"


def test_pareto_front_keeps_only_undominated_points():
    points = [(1.0, 0.9), (2.0, 0.8), (2.0, 0.7), (3.0, 0.5), (1.5, 0.85), (1.2, 0.6)]
    assert pareto_front(points) == [0, 1, 3, 4]


def test_report_refuses_to_overwrite_and_to_run_on_nothing(runs, tmp_path):
    write_report([runs / "seed-1"], tmp_path, overwrite=False)
    before = (tmp_path / "report.md").read_text()
    with pytest.raises(BequestError, match="--overwrite"):
        write_report([runs], tmp_path, overwrite=False)
    assert (tmp_path / "report.md").read_text() == before
    (tmp_path / "empty").mkdir()
    result = subprocess.run([BEQUEST, "report", str(tmp_path / "empty"), "--output", str(tmp_path / "out")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("error: no finished run") and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
