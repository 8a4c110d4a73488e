"""`bequest sweep`: grid expansion, refusal before any run, skip and resume, the shared teacher, the report."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import tiny_recipe

from bequest.errors import BequestError
from bequest.sweep import grid_points, plan, point_name, progress, run_sweep

BEQUEST = str(Path(sys.executable).parent / "bequest")


def test_grid_is_the_full_product_in_order():
    points = grid_points({"seed": [1, 2], "students.0.init": ["lower", "upper", "uniform"]})
    assert len(points) == 6
    assert points[0] == [("seed", 1), ("students.0.init", "lower")]
    assert points[1] == [("seed", 1), ("students.0.init", "upper")]
    assert points[5] == [("seed", 2), ("students.0.init", "uniform")]
    assert point_name(3, points[3]) == "003-seed=2_init=lower"
    named = point_name(0, [("students.0.objectives", {"kd": {}})])
    assert named.startswith("000-objectives=") and len(named) == len("000-objectives=") + 8


def _sweep(folder: Path, teacher, glue, grid: dict) -> Path:
    tiny_recipe(folder, teacher, glue, students=[{"name": "student", "layers": 2, "init": "lower",
                                                  "train": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3}}])
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump({"recipe": "recipe.yaml", "output_dir": str(folder / "out"), "grid": grid}, sort_keys=False))
    return path


def test_a_bad_value_anywhere_in_the_grid_is_refused_before_any_run(tmp_path, tiny_teacher, tiny_glue):
    path = _sweep(tmp_path, tiny_teacher, tiny_glue, {"seed": [1], "students.0.init": ["lower", "sideways"]})
    with pytest.raises(BequestError, match="001-seed=1_init=sideways.*students.0.init"):
        plan(path)
    result = subprocess.run([BEQUEST, "sweep", str(path)], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("error: sweep") and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_sweep_runs_skips_resumes_and_reports(tmp_path, tiny_teacher, tiny_glue):
    path = _sweep(tmp_path, tiny_teacher, tiny_glue, {"students.0.init": ["lower", "upper"], "seed": [3]})
    report = run_sweep(path)
    out = tmp_path / "out"
    runs = [out / "000-init=lower_seed=3", out / "001-init=upper_seed=3"]
    results = [json.loads((run / "results.json").read_text()) for run in runs]
    assert [r["students"]["student"]["layers_from"] for r in results] == [[0, 1], [2, 3]]
    # same task, data, settings and seed: the second run found the first one's fine-tuned teacher
    assert [r["teacher"]["cache_hit"] for r in results] == [False, True]
    table = (report / "report.md").read_text()
    assert table.count("| sst2 | student |") == 2 and table.count("| sst2 | teacher |") == 1  # two settings, one teacher
    assert re.search(r"\| sst2 \| teacher \| \w{8} \| 1 \|", table)  # one cached teacher shared by two runs counts once
    assert len(re.findall(r"\| sst2 \| student \| \w{8} \| 1 \|", table)) == 2
    # again: both finished, so both are skipped and left as they were
    stamps = [(run / "results.json").stat().st_mtime_ns for run in runs]
    run_sweep(path)
    assert [(run / "results.json").stat().st_mtime_ns for run in runs] == stamps
    assert {e["status"] for e in json.loads((out / "sweep.json").read_text())} == {"finished earlier, skipped"}
    # an interrupted run (its student exported, its results not yet written) is resumed, not restarted
    (runs[1] / "results.json").unlink()
    exported = (runs[1] / "student" / "model.safetensors").stat().st_mtime_ns
    run_sweep(path)
    statuses = [e["status"] for e in json.loads((out / "sweep.json").read_text())]
    assert statuses == ["finished earlier, skipped", "resumed"]
    assert (runs[1] / "results.json").is_file()
    assert (runs[1] / "student" / "model.safetensors").stat().st_mtime_ns == exported


def test_progress_estimates_the_rest_from_the_runs_trained_here():
    runs = [None] * 5
    assert progress([], runs, time.perf_counter()) == ""
    skipped = {"status": "finished earlier, skipped", "seconds": 0.0}
    assert progress([skipped], runs, time.perf_counter()) == ""  # nothing trained yet: no estimate
    index = [skipped, {"status": "run", "seconds": 120.0}, {"status": "resumed", "seconds": 240.0}]
    # 2 runs left x the 180 s mean of the two trained
    assert progress(index, runs, time.perf_counter() - 600).endswith("10.0 min so far, about 6 min left")
