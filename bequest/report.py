"""`bequest report`: finished run directories -> one comparison table and its plots.

Each run's results.json gives a row per model (the teacher and every student). Rows whose
settings are the same but for the seed (for a student: task, data, teacher and its own section
of the recipe; for the teacher: task, data and teacher) are one group: the table gives the
mean and standard deviation of the main score over the seeds, the score retained against the
run's own teacher, size, latency, speed-up and training time. It is written as Markdown, CSV and
HTML; `pareto.png` plots score against speed-up with each task's Pareto front, `curves.png` the
per-epoch dev score (held-out loss on a corpus) of every model.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from pathlib import Path

import matplotlib
import pandas as pd
import yaml

from bequest.errors import BequestError
from bequest.io import write_text
from bequest.run_dir import RECIPE_FILE

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

OUTPUTS = ("report.md", "report.csv", "report.html", "pareto.png", "curves.png")


def find_runs(paths: list[Path]) -> list[Path]:
    """Every finished run directory (one holding results.json) at or below `paths`."""
    runs = []
    for path in map(Path, paths):
        if not path.exists():
            raise BequestError(f"{path} does not exist: give run directories, or folders that hold them")
        runs += [path] if (path / "results.json").is_file() else sorted(p.parent for p in path.rglob("results.json"))
    if not runs:
        raise BequestError(f"no finished run (results.json) in {', '.join(map(str, paths))}: run a recipe to the end first")
    return list(dict.fromkeys(runs))


def settings_key(recipe: dict, model: str) -> str:
    """A hash of what decides a model's result apart from the seed: rows with equal keys are seeds of one setting."""
    shared = {key: value for key, value in recipe.items() if key in ("task", "corpus", "data", "qa", "teacher")}
    own = [student for student in recipe.get("students", []) if student.get("name") == model]
    return hashlib.sha256(json.dumps([shared, own], sort_keys=True, default=str).encode()).hexdigest()[:8]


def run_rows(run_dir: Path) -> list[dict]:
    """One row per model of a finished run."""
    try:
        results = json.loads((run_dir / "results.json").read_text())
        metric, teacher = results["main_metric"], results["teacher"]
        models = [("teacher", teacher), *results["students"].items()]
        recipe = yaml.safe_load((run_dir / RECIPE_FILE).read_text())
    except (OSError, yaml.YAMLError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise BequestError(f"{run_dir} is not a finished bequest run ({error}): remove it or re-run it") from None
    task = results["task"] or "corpus"
    teacher_score = teacher.get("dev", {}).get(metric)
    seed = next((row.get("seed") for _, row in models[1:]), None)  # the run's seed, recorded with each student
    rows = []
    for name, row in models:
        score = row["dev"][metric] if "dev" in row else row.get("heldout_loss")
        rows.append({"task": task, "model": name, "settings": settings_key(recipe, name), "run": str(run_dir), "seed": seed, "metric": metric,
                     "score": score, "retained": score / teacher_score if score is not None and teacher_score else None,
                     "layers": row["num_layers"], "parameters": row["parameters"], "latency_ms": row["latency_ms"],
                     "speedup": row["speedup"], "train_seconds": row.get("train_seconds"),
                     "init": row.get("init", "teacher"), "objectives": row.get("objectives", "-"),
                     "teacher_path": teacher.get("path", teacher.get("model"))})
    for name, row in results.get("baselines", {}).items():  # what knowing only the training labels scores
        score = row["dev"][metric]
        rows.append({**rows[0], "model": f"({name})", "score": score, "retained": score / teacher_score if teacher_score else None,
                     "layers": 0, "parameters": 0, "latency_ms": None, "speedup": None, "train_seconds": None,
                     "init": BASELINE, "objectives": "-"})
    return rows


BASELINE = "baseline"  # the init column of a baseline's row: no model, no size, no speed


def distinct_teachers(rows: list[dict]) -> list[dict]:
    """The rows less repeats of one teacher: runs that share a cached fine-tuned teacher (same path) have
    one teacher between them, which counts once in its group, not once per run."""
    seen, kept = set(), []
    for row in rows:
        shared = row["model"] == "teacher" or row["init"] == BASELINE  # one per teacher, not one per run
        identity = (row["model"], row["settings"], row["teacher_path"]) if shared else None
        if identity is None or identity not in seen:
            kept.append(row)
        seen.add(identity)
    return kept


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def aggregate(rows: list[dict]) -> pd.DataFrame:
    """Mean and standard deviation (0 for one seed) over the runs of each (task, model, settings)."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["task"], row["model"], row["settings"]), []).append(row)
    table = []
    for (task, model, settings), members in groups.items():
        scores = [m["score"] for m in members if m["score"] is not None]
        table.append({"task": task, "model": model, "settings": settings, "metric": members[0]["metric"], "runs": len(members),
                      "score_mean": _mean(scores), "score_std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                      "retained": _mean([m["retained"] for m in members]), "layers": members[0]["layers"],
                      "parameters": members[0]["parameters"], "latency_ms": _mean([m["latency_ms"] for m in members]),
                      "speedup": _mean([m["speedup"] for m in members]),
                      "train_seconds": _mean([m["train_seconds"] for m in members]),
                      "init": members[0]["init"], "objectives": members[0]["objectives"]})
    return pd.DataFrame(table)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both speed-up and score (higher is better for both)."""
    return [i for i, (x, y) in enumerate(points)
            if not any(ox >= x and oy >= y and (ox, oy) != (x, y) for ox, oy in points)]


def _markdown(table: pd.DataFrame) -> str:
    lines = ["| task | model | settings | runs | score (mean ± sd) | retained | layers | parameters | latency ms | speed-up | training s | init | objectives |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in table.to_dict("records"):
        retained = f"{row['retained']:.1%}" if pd.notna(row["retained"]) else "-"
        train = f"{row['train_seconds']:.0f}" if pd.notna(row["train_seconds"]) else "-"
        model = row["init"] != BASELINE
        size = f"{row['layers']} | {row['parameters'] / 1e6:.1f}M | {row['latency_ms']:.1f} | {row['speedup']:.2f}x" if model else "- | - | - | -"
        lines.append(f"| {row['task']} | {row['model']} | {row['settings']} | {row['runs']} | {row['metric']} {row['score_mean']:.4f} ± {row['score_std']:.4f} | "
                     f"{retained} | {size} | {train} | {row['init']} | {row['objectives']} |")
    return "\n".join(lines) + "\n"


def _plot_pareto(table: pd.DataFrame, path: Path) -> None:
    tasks = list(dict.fromkeys(table["task"]))
    figure, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.2), squeeze=False)
    for axis, task in zip(axes[0], tasks):
        mine = table[table["task"] == task].reset_index(drop=True)
        for baseline in mine[mine["init"] == BASELINE].to_dict("records"):
            axis.axhline(baseline["score_mean"], color="grey", linestyle=":", label=baseline["model"])
        mine = mine[mine["init"] != BASELINE].reset_index(drop=True)
        points = list(zip(mine["speedup"], mine["score_mean"]))
        axis.errorbar(mine["speedup"], mine["score_mean"], yerr=mine["score_std"], fmt="o", capsize=3)
        repeated = mine["model"].duplicated(keep=False)  # one model name, several settings: name them apart
        for (x, y), name, settings, twin in zip(points, mine["model"], mine["settings"], repeated):
            axis.annotate(f"{name} {settings}" if twin else name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        if mine["task"].iloc[0] != "corpus":  # a loss is lower-better: no front drawn
            front = sorted(points[i] for i in pareto_front(points))
            axis.plot(*zip(*front), "r--", label="Pareto front")
            axis.legend()
        axis.set_xlabel("speed-up vs teacher")
        axis.set_ylabel(mine["metric"].iloc[0])
        axis.set_title(task)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _plot_curves(rows: list[dict], path: Path) -> None:
    figure, axis = plt.subplots(figsize=(7, 4.2))
    for row in rows:
        log = Path(row["run"]) / "logs" / f"{row['model']}.json"
        if not log.is_file():  # a teacher that was not fine-tuned by bequest has no curve
            continue
        history = [h.get(row["metric"]) for h in json.loads(log.read_text())]
        label = f"{row['task']} {row['model']}" + (f" (seed {row['seed']})" if row["seed"] is not None else "")
        axis.plot(range(1, len(history) + 1), history, marker=".", label=label)
    axis.set_xlabel("epoch (all stages)")
    axis.set_ylabel("dev score / held-out loss")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(paths: list[Path], output: Path, overwrite: bool) -> pd.DataFrame:
    """Aggregate the runs under `paths` into `output`/report.{md,csv,html}, pareto.png, curves.png."""
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise BequestError(f"--output {output} is a file: give the folder to write the report to")
    existing = [name for name in OUTPUTS if (output / name).exists()]
    if existing and not overwrite:
        raise BequestError(f"{output} already holds {', '.join(existing)}: pass --overwrite to replace them, or --output elsewhere")
    rows = distinct_teachers([row for run in find_runs(paths) for row in run_rows(run)])
    table = aggregate(rows)
    output.mkdir(parents=True, exist_ok=True)
    write_text(output / "report.md", _markdown(table))
    write_text(output / "report.csv", table.to_csv(index=False))
    write_text(output / "report.html", table.to_html(index=False, float_format=lambda v: f"{v:.4f}"))
    _plot_pareto(table, output / "pareto.png")
    _plot_curves(rows, output / "curves.png")
    return table
