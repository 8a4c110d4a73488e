"""`bequest sweep`: one recipe run over a grid of overrides, then one report of all the runs.

A sweep file names a recipe and a grid of recipe keys (as `--set` takes them) to lists of values:

    recipe: glue.yaml                # relative to the sweep file
    output_dir: sweeps/init          # default: sweeps/<sweep file name>
    set: {data.max_train_examples: 8000}   # the same in every run
    grid:
      task: [sst2, mrpc]
      students.0.init: [lower, upper]
      seed: [1, 2, 3]

Every combination is one ordinary run directory under `output_dir`. All of them are validated
before the first starts. A run already finished (results.json) is skipped, one that was
interrupted is resumed from its checkpoints, so re-running the same command continues the
sweep. Fine-tuned teachers and teacher logits are shared through the cache: runs that differ
only in their students fine-tune the teacher once. At the end `output_dir/report/` holds the
comparison of every run (see `bequest.report`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import time
from pathlib import Path

from pydantic import Field, ValidationError
from rich.console import Console

from bequest.config import RunConfig, describe_error, load_config
from bequest.errors import BequestError
from bequest.io import write_json
from bequest.pipeline import check_models, run_recipe
from bequest.recipe_files import read_yaml_mapping
from bequest.report import write_report
from bequest.run_dir import is_run_dir
from bequest.section import Section
from bequest.train.runtime import is_main_process

console = Console(stderr=True)


class SweepConfig(Section):
    recipe: str = Field(description="the recipe every run starts from, relative to the sweep file")
    grid: dict[str, list] = Field(min_length=1, description="recipe key -> the values it takes")
    set: dict[str, object] = Field(default_factory=dict, description="recipe key -> one value, for every run")
    output_dir: str | None = Field(None, description="default: sweeps/<sweep file name>")


def load_sweep(path: str | Path) -> SweepConfig:
    path = Path(path)
    try:
        sweep = SweepConfig.model_validate(read_yaml_mapping(path, "sweep", "recipes/sweep-init.yaml"))
    except ValidationError as error:
        raise BequestError(f"sweep {path}: {describe_error(error)}") from None
    empty = [key for key, values in sweep.grid.items() if not values]
    if empty:
        raise BequestError(f"sweep {path}: grid.{empty[0]} has no values: give at least one")
    return sweep


def grid_points(grid: dict[str, list]) -> list[list[tuple[str, object]]]:
    """Every combination of the grid's values, the last key varying fastest."""
    return [list(zip(grid, values)) for values in itertools.product(*grid.values())]


def point_name(number: int, point: list[tuple[str, object]]) -> str:
    """A run directory name that shows the point's values (a short hash for a section value)."""
    def short(value) -> str:
        if isinstance(value, (dict, list)):
            return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:8]
        return str(value)

    text = "_".join(f"{key.split('.')[-1]}={short(value)}" for key, value in point)
    return f"{number:03d}-" + re.sub(r"[^A-Za-z0-9._=+-]", "-", text)[:100]


def plan(path: str | Path, overrides: list[tuple[str, object]] = ()) -> tuple[Path, list[tuple[str, list, RunConfig]]]:
    """The sweep's output folder and (name, point, validated config) of each run: a bad key or value
    anywhere in the grid is refused before any run starts. `overrides` (e.g. the data folder)
    apply to every run, after the sweep's own `set`."""
    path = Path(path)
    sweep = load_sweep(path)
    fixed = [*sweep.set.items(), *overrides]
    output = Path(sweep.output_dir or Path("sweeps") / path.stem)
    runs = []
    for number, point in enumerate(grid_points(sweep.grid)):
        name = point_name(number, point)
        try:
            config = load_config(path.parent / sweep.recipe, [*fixed, *point, ("output_dir", str(output / name))])
            check_models(config)  # the teacher and every student's shape, before the first run trains anything
        except BequestError as error:
            raise BequestError(f"sweep {path}, run {name}: {error}") from None
        runs.append((name, point, config))
    return output, runs


def progress(index: list[dict], runs: list, swept: float) -> str:
    """Time so far and, from the mean time of the runs this sweep trained, an estimate of the rest."""
    trained = [entry["seconds"] for entry in index if entry["status"] != "finished earlier, skipped"]
    if not trained:
        return ""
    left = (len(runs) - len(index)) * sum(trained) / len(trained)
    return f"; {(time.perf_counter() - swept) / 60:.1f} min so far, about {left / 60:.0f} min left"


def run_sweep(path: str | Path, overrides: list[tuple[str, object]] = ()) -> Path:
    """Run (or continue) every run of the sweep, then write the report; return the report folder."""
    output, runs = plan(path, overrides)
    main = is_main_process()  # under accelerate launch every process runs the sweep; one writes
    index, swept = [], time.perf_counter()
    for number, (name, point, config) in enumerate(runs, 1):
        run_dir = config.run_dir
        if (run_dir / "results.json").is_file():
            status = "finished earlier, skipped"
        else:
            status = "resumed" if is_run_dir(run_dir) else "run"
        console.rule(f"sweep {number}/{len(runs)}: {name} ({status}){progress(index, runs, swept)}")
        started = time.perf_counter()
        if status != "finished earlier, skipped":
            run_recipe(config, resume=status == "resumed")
        index.append({"name": name, "overrides": dict(point), "run_dir": str(run_dir), "status": status,
                      "seconds": round(time.perf_counter() - started, 1)})
        if main:
            write_json(output / "sweep.json", index)
    report = output / "report"
    if main:
        write_report([Path(entry["run_dir"]) for entry in index], report, overwrite=True)
        console.print(f"sweep done: {len(runs)} runs in {output}; comparison in {report / 'report.md'}")
    return report
