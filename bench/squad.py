"""SQuAD (issue 8): recipes/squad.yaml end to end, timed from an empty cache, so the teacher's fine-tuning counts.

The default teacher (MiniLM-L6) is fine-tuned for extractive QA on 80% of the dev set's articles
(the only SQuAD data here), a 3-layer student is distilled from it (KD on start/end logits +
hidden states), and both are scored with the official EM/F1 on questions of the other 20%.

    python bench/squad.py --data ../shared/data                    # under an hour on 2 CPU cores
    python bench/squad.py --data ../shared/data --task squad_v2    # with unanswerable questions
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import matplotlib
import psutil
import torch

from bequest.config import load_config
from bequest.pipeline import run_recipe

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def plot(run_dir: Path, students: list[str], path: Path) -> None:
    """Dev F1 after every epoch, teacher and students."""
    figure, axis = plt.subplots(figsize=(6, 4))
    for name in ["teacher", *students]:
        history = json.loads((run_dir / "logs" / f"{name}.json").read_text())
        axis.plot(range(1, len(history) + 1), [row["f1"] for row in history], marker="o", label=name)
    axis.set_xlabel("epoch")
    axis.set_ylabel("dev F1")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "squad.yaml")
    parser.add_argument("--task", default="squad", choices=["squad", "squad_v2"])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    command = "python bench/squad.py " + " ".join(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        config = load_config(args.recipe, [("task", args.task), ("data.dir", str(args.data / "squad")),
                                           ("output_dir", f"{scratch}/run"), ("cache_dir", f"{scratch}/cache")])
        results = run_recipe(config)
        seconds = time.perf_counter() - started
        args.out.mkdir(parents=True, exist_ok=True)
        stem = "squad" if args.task == "squad" else "squad_v2"
        plot(config.run_dir, list(results["students"]), args.out / f"{stem}.png")
    settings = {"task": args.task, "recipe": str(args.recipe.relative_to(ROOT)), "max_length": config.data.max_length,
                "stride": config.qa.stride, "split_by_article": config.data.split_by_article,
                "train_questions": config.data.max_train_examples, "eval_questions": config.data.max_eval_examples,
                "seed": config.seed}
    rows = [{**settings, "model": name, "layers": row["num_layers"], "parameters": row["parameters"], **row["dev"],
             "latency_ms": row["latency_ms"], "speedup": row["speedup"], "train_seconds": row.get("train_seconds"),
             "init": row.get("init"), "objectives": row.get("objectives")}
            for name, row in [("teacher", results["teacher"]), *results["students"].items()]]
    (args.out / f"{stem}.json").write_text(json.dumps(rows, indent=1) + "\n")
    metrics = [m for m in results["teacher"]["metrics"] if m in results["teacher"]["dev"]]
    table = ["| model | layers | parameters | " + " | ".join(metrics) + " | latency ms (batch 32) | speed-up | training min |",
             "|---|---|---|" + "---|" * len(metrics) + "---|---|---|"]
    for row in rows:
        minutes = f"{row['train_seconds'] / 60:.1f}" if row["train_seconds"] else "-"
        table.append(f"| {row['model']} | {row['layers']} | {row['parameters'] / 1e6:.1f}M | "
                     + " | ".join(f"{row[m]:.2f}" for m in metrics)
                     + f" | {row['latency_ms']:.0f} | {row['speedup']:.2f}x | {minutes} |")
    machine = f"{platform.machine()}, {psutil.cpu_count()} cores, torch {torch.__version__}"
    (args.out / f"{stem}.md").write_text(f"""# SQuAD ({args.task}): teacher vs 3-layer student

Command: `{command}`
Machine: {machine}. Wall time of the whole recipe from an empty cache (teacher fine-tuning, distillation,
evaluation, export): {seconds / 60:.1f} min. Plot: `{stem}.png` (dev F1 after each epoch).
Data: the dev set split by article ({config.data.split_by_article:.0%} of articles held out, seed {config.seed});
{config.data.max_train_examples} training questions, {config.data.max_eval_examples} evaluation questions;
windows of {config.data.max_length} tokens, stride {config.qa.stride}. EM/F1 as the official evaluation script (percent).

{chr(10).join(table)}
""")


if __name__ == "__main__":
    main()
