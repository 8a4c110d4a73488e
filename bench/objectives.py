"""Benchmark: which objective and which initialisation for a 3-layer student of the default teacher?

Part A (task-specific, SST-2): logit KD alone, KD + hidden states, KD + attention KL, KD + MiniLMv2
relations, each from the teacher's lower layers and from random initialisation, all with the same
data, steps and learning rate.
Part B (task-agnostic): a 3-layer general student distilled with MiniLMv2 on the Wikipedia text,
then fine-tuned on SST-2, against the same student fine-tuned on SST-2 from random initialisation.

Every run goes through bequest's own pipeline (`run_recipe`); finished runs are reused, so an
interrupted benchmark continues where it stopped. Results: bench/results/objectives.{json,md,png}.

    python bench/objectives.py --data ../shared/data            # the full setting (hours on 2 CPU cores)
    python bench/objectives.py --data ../shared/data --train-examples 4000 --epochs 2 --general-steps 300
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from bequest.config import parse_config  # noqa: E402
from bequest.io import write_json, write_text  # noqa: E402
from bequest.pipeline import run_recipe  # noqa: E402

HERE = Path(__file__).resolve().parent
OBJECTIVES = {
    "kd": {"kd": {}},
    "kd+hidden": {"kd": {}, "hidden": {}},
    "kd+attention_kl": {"kd": {}, "attention_kl": {}},
    "kd+minilmv2": {"kd": {}, "minilmv2": {}},
}


def run(name: str, recipe: dict, runs: Path) -> dict:
    """Run one recipe into runs/<name>, or read its results if it already finished."""
    folder = runs / name
    if (folder / "results.json").is_file():
        return json.loads((folder / "results.json").read_text())
    recipe = {**recipe, "name": name, "output_dir": str(folder)}
    return run_recipe(parse_config(recipe, f"benchmark run {name}"), resume=(folder / "recipe.yaml").is_file())


def task_recipe(args, students: list[dict]) -> dict:
    return {
        "task": "sst2", "seed": args.seed, "cache_dir": str(args.cache),
        "data": {"dir": str(args.data / "glue"), "max_train_examples": args.train_examples, "max_length": 64},
        "teacher": {"finetune": {"epochs": 2, "batch_size": 32, "learning_rate": 1e-4}},
        "students": students,
    }


def student_train(args) -> dict:
    return {"epochs": args.epochs, "batch_size": 32, "learning_rate": 1e-4}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder holding glue/ and wiki/")
    parser.add_argument("--train-examples", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--general-steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--runs", type=Path, default=HERE / "runs" / "objectives")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "bequest")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = []

    for init in ("lower", "random"):
        for label, objectives in OBJECTIVES.items():
            student = {"name": "student", "layers": 3, "init": init, "objectives": objectives, "train": student_train(args)}
            results = run(f"sst2-{init}-{label}", task_recipe(args, [student]), args.runs)
            row = results["students"]["student"]
            rows.append({"part": "task-specific", "task": "sst2", "init": init, "objectives": label,
                         "dev_accuracy": row["dev"]["accuracy"], "teacher_dev_accuracy": results["teacher"]["dev"]["accuracy"],
                         "parameters": row["parameters"], "train_seconds": row["train_seconds"],
                         "train_examples_per_s": row["train_examples_per_s"], "train_examples": args.train_examples,
                         "epochs": args.epochs})

    general = {
        "corpus": {"files": [str(args.data / "wiki" / "enwiki_sample.txt")], "max_length": 128, "heldout_segments": 256},
        "cache_dir": str(args.cache), "seed": args.seed,
        "students": [{"name": "general", "layers": 3, "init": "uniform", "objectives": {"minilmv2": {"relation_heads": 12}},
                      "train": {"max_steps": args.general_steps, "batch_size": 32, "learning_rate": 5e-4,
                                "adam_betas": [0.9, 0.98], "adam_epsilon": 1e-6, "warmup_ratio": 0.06,
                                "checkpoint_every": 100, "log_every": 10}}],
    }
    agnostic = run("general-minilmv2", general, args.runs)
    general_row = agnostic["students"]["general"]
    rows.append({"part": "task-agnostic", "corpus": "enwiki_sample.txt", "objectives": "minilmv2", "init": "uniform",
                 "steps": args.general_steps, "heldout_loss": general_row["heldout_loss"],
                 "train_seconds": general_row["train_seconds"], "train_examples_per_s": general_row["train_examples_per_s"],
                 "train_tokens_per_s": round(general_row["train_examples_per_s"] * 128, 1)})
    starts = {"general-minilmv2": {"model": str(args.runs / "general-minilmv2" / "general")}, "random": {"layers": 3, "init": "random"}}
    for label, start in starts.items():
        student = {"name": "student", **start, "objectives": {"task": {}}, "train": student_train(args)}
        results = run(f"sst2-finetune-from-{label}", task_recipe(args, [student]), args.runs)
        row = results["students"]["student"]
        rows.append({"part": "task-agnostic then fine-tune", "task": "sst2", "init": label, "objectives": "task",
                     "dev_accuracy": row["dev"]["accuracy"], "parameters": row["parameters"],
                     "train_examples": args.train_examples, "epochs": args.epochs})

    wall = round(time.perf_counter() - started, 1)
    command = "python bench/objectives.py " + " ".join(sys.argv[1:])
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, " + (torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")
    write_json(HERE / "results" / "objectives.json", [{**row, "command": command, "machine": machine} for row in rows])
    plot(rows, HERE / "results" / "objectives.png")
    write_text(HERE / "results" / "objectives.md", report(rows, command, machine, wall))
    print(report(rows, command, machine, wall))


def plot(rows: list[dict], path: Path) -> None:
    specific = [r for r in rows if r["part"] == "task-specific"]
    labels = list(OBJECTIVES)
    figure, axis = plt.subplots(figsize=(7, 4))
    for offset, init in ((-0.2, "lower"), (0.2, "random")):
        scores = [next(r["dev_accuracy"] for r in specific if r["init"] == init and r["objectives"] == label) for label in labels]
        axis.bar([i + offset for i in range(len(labels))], scores, width=0.4, label=f"init: {init}")
    axis.axhline(specific[0]["teacher_dev_accuracy"], color="black", linestyle="--", label="teacher")
    axis.set_xticks(range(len(labels)), labels)
    axis.set_ylabel("SST-2 dev accuracy")
    axis.set_ylim(0.5, 1.0)
    axis.legend()
    axis.set_title("3-layer student of MiniLM-L6 on SST-2")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def report(rows: list[dict], command: str, machine: str, wall: float) -> str:
    specific = [r for r in rows if r["part"] == "task-specific"]
    lines = ["# Objectives benchmark", "", f"Command: `{command}`  ", f"Machine: {machine}  ", f"Wall time: {wall} s  ",
             "Plot: objectives.png", "",
             f"## Task-specific: SST-2, 3-layer student, {specific[0]['train_examples']} training sentences x {specific[0]['epochs']} epochs",
             "", f"Teacher dev accuracy: {specific[0]['teacher_dev_accuracy']:.4f}", "",
             "| objectives | init lower | init random | train ex/s (lower) |", "|---|---|---|---|"]
    for label in OBJECTIVES:
        lower = next(r for r in specific if r["init"] == "lower" and r["objectives"] == label)
        random_ = next(r for r in specific if r["init"] == "random" and r["objectives"] == label)
        lines.append(f"| {label} | {lower['dev_accuracy']:.4f} | {random_['dev_accuracy']:.4f} | {lower['train_examples_per_s']} |")
    general = next(r for r in rows if r["part"] == "task-agnostic")
    lines += ["", f"## Task-agnostic: MiniLMv2 on Wikipedia, {general['steps']} steps of 32 x 128 tokens", "",
              f"Held-out MiniLMv2 loss {general['heldout_loss']:.4f}; {general['train_seconds']} s of training, "
              f"{general['train_examples_per_s']} segments/s ({general['train_tokens_per_s']} tokens/s).", "",
              "| SST-2 fine-tuning from | dev accuracy |", "|---|---|"]
    for r in rows:
        if r["part"] == "task-agnostic then fine-tune":
            lines.append(f"| {r['init']} | {r['dev_accuracy']:.4f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
