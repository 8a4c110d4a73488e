"""Your own data (issue 18): NER on CoNLL-2003, the generic CSV path against the GLUE preset, and the
memory of a 400k-row file.

- conll: recipes/ner.yaml as a user runs it - the default teacher (MiniLM-L6) fine-tuned on the whole
  CoNLL-2003 training set, then 3-layer students from its lower layers (logit KD; KD + hidden states),
  for two seeds (the second seed's students learn from the first seed's fine-tuned teacher, so the
  seeds differ in the students only). Entity F1 (seqeval, strict IOB2) on dev and on test (data.test,
  scored once at the end), retention, speed-up, training time.
- sst2: `task: text-classification` on SST-2's own TSV files against the `sst2` preset, same settings:
  the same dev accuracy is expected (the same model, bit for bit).
- memory: a synthetic 400,000-row CSV (MNLI-size) read, tokenised and trained on for a few steps, each
  in a process of its own; its peak resident memory.

    python bench/tasks.py --data ../shared/data --part conll     # about an hour on 2 CPU cores
    python bench/tasks.py --data ../shared/data --part sst2
    python bench/tasks.py --data ../shared/data --part memory

Each part updates its entry of bench/results/tasks.json; tasks.md is written from all entries.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch

from bequest.config import load_config
from bequest.pipeline import run_recipe

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (42, 43)


def conll(data: Path, scratch: Path) -> dict:
    conll_dir = data / "ner" / "conll2003"
    files = [("data.train", str(conll_dir / "train.txt")), ("data.validation", str(conll_dir / "dev.txt")),
             ("data.test", str(conll_dir / "test.txt"))]
    rows, teacher_path, started = [], None, time.perf_counter()
    for seed in SEEDS:
        overrides = [*files, ("seed", seed), ("output_dir", str(scratch / f"conll-{seed}")), ("cache_dir", str(scratch / "cache"))]
        if teacher_path:  # the first seed's fine-tuned teacher: it has its tagging head, so it is not fine-tuned again
            overrides.append(("teacher.model", teacher_path))
        results = run_recipe(load_config(ROOT / "recipes" / "ner.yaml", overrides))
        teacher = results["teacher"]
        teacher_path = teacher_path or teacher["path"]
        if seed == SEEDS[0]:
            rows.append({"model": "teacher", "seed": seed, "layers": teacher["num_layers"], "parameters": teacher["parameters"],
                         "dev_f1": teacher["dev"]["f1"], "test_f1": teacher["test"]["f1"], "speedup": 1.0,
                         "latency_ms": teacher["latency_ms"], "train_seconds": teacher.get("train_seconds")})
        for name, student in results["students"].items():
            rows.append({"model": name, "seed": seed, "layers": student["num_layers"], "parameters": student["parameters"],
                         "objectives": student["objectives"], "dev_f1": student["dev"]["f1"], "test_f1": student["test"]["f1"],
                         "dev_retention": student["dev"]["f1"] / rows[0]["dev_f1"],
                         "test_retention": student["test"]["f1"] / rows[0]["test_f1"],
                         "speedup": student["speedup"], "latency_ms": student["latency_ms"],
                         "train_seconds": student["train_seconds"]})
    return {"rows": rows, "wall_minutes": round((time.perf_counter() - started) / 60, 1),
            "recipe": "recipes/ner.yaml", "seeds": list(SEEDS)}


def conll_table(entry: dict) -> str:
    lines = ["| model | seed | layers | parameters | dev F1 | test F1 | dev retention | test retention | speed-up | "
             "training min |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in entry["rows"]:
        retention = [f"{row[k]:.1%}" if k in row else "-" for k in ("dev_retention", "test_retention")]
        minutes = f"{row['train_seconds'] / 60:.1f}" if row.get("train_seconds") else "-"
        lines.append(f"| {row['model']} | {row['seed']} | {row['layers']} | {row['parameters'] / 1e6:.1f}M | "
                     f"{row['dev_f1']:.4f} | {row['test_f1']:.4f} | {retention[0]} | {retention[1]} | "
                     f"{row['speedup']:.2f}x | {minutes} |")
    means = {}
    for row in entry["rows"]:
        if row["model"] != "teacher":
            means.setdefault(row["model"], []).append(row)
    lines += ["", "| student | mean dev retention | mean test retention | mean speed-up | target (>= 97% at >= 1.9x) |",
              "|---|---|---|---|---|"]
    for name, group in means.items():
        mean = {k: sum(r[k] for r in group) / len(group) for k in ("dev_retention", "test_retention", "speedup")}
        met = "met" if mean["dev_retention"] >= 0.97 and mean["test_retention"] >= 0.97 and mean["speedup"] >= 1.9 else "not met"
        lines.append(f"| {name} | {mean['dev_retention']:.1%} | {mean['test_retention']:.1%} | {mean['speedup']:.2f}x | {met} |")
    return "\n".join(lines)


def sst2(data: Path, scratch: Path) -> dict:
    """The quickstart on 2,000 training sentences, once through the preset and once through the generic keys."""
    glue = data / "glue" / "SST-2"
    common = [("data.max_train_examples", 2000), ("cache_dir", str(scratch / "cache")), ("students.0.train.epochs", 2)]
    routes = {
        "preset (task: sst2, data.dir)": [("task", "sst2"), ("data.dir", str(data / "glue"))],
        "generic (task: text-classification, data.train/validation = SST-2's TSV files)": [
            ("task", "text-classification"), ("data.train", str(glue / "train.tsv")),
            ("data.validation", str(glue / "dev.tsv")), ("data.text_column", "sentence"), ("data.label_column", "label")],
    }
    rows = []
    for number, (route, overrides) in enumerate(routes.items()):
        config = load_config(ROOT / "recipes" / "quickstart.yaml", [*overrides, *common, ("output_dir", str(scratch / f"sst2-{number}"))])
        started = time.perf_counter()
        results = run_recipe(config)
        rows.append({"route": route, "teacher_accuracy": results["teacher"]["dev"]["accuracy"],
                     "student_accuracy": results["students"]["student"]["dev"]["accuracy"],
                     "teacher_cache_hit": results["teacher"]["cache_hit"],
                     "minutes": round((time.perf_counter() - started) / 60, 1)})
    from safetensors.torch import load_file

    first, second = (load_file(str(scratch / f"sst2-{n}" / "student" / "model.safetensors")) for n in (0, 1))
    identical = first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    return {"rows": rows, "identical_student_weights": identical, "train_examples": 2000}


def sst2_table(entry: dict) -> str:
    lines = ["| route | teacher dev accuracy | student dev accuracy | teacher from the cache | minutes |", "|---|---|---|---|---|"]
    lines += [f"| {r['route']} | {r['teacher_accuracy']:.4f} | {r['student_accuracy']:.4f} | {'yes' if r['teacher_cache_hit'] else 'no'} "
              f"| {r['minutes']} |" for r in entry["rows"]]
    return "\n".join(lines) + (
        "\n\nThe routes share a cache directory; the column says whether a route's teacher came from it. "
        f"Student weights bit-identical between the two routes: {entry['identical_student_weights']}.")


MEMORY_PROBE = """
import resource, sys, time
from bequest.config import load_config
from bequest.pipeline import run_recipe
started = time.perf_counter()
run_recipe(load_config(sys.argv[1]))
print("PEAK", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, time.perf_counter() - started)
"""


def memory(data: Path, scratch: Path, rows: int = 400_000, before: str = "ab1823d") -> dict:
    """Peak memory of a run on a synthetic CSV of `rows` rows (texts of 8-40 words drawn from SST-2's words), with
    this tree and with the commit `before` (tokenised into Python lists), alternating, each in a fresh process."""
    import random

    import yaml

    words = (data / "glue" / "SST-2" / "train.tsv").read_text().split()
    generator = random.Random(0)
    csv = scratch / "big.csv"
    with csv.open("w") as out:
        out.write("text,label\n")
        for row in range(rows):
            text = " ".join(generator.choice(words) for _ in range(generator.randint(8, 40))).replace('"', "'")
            out.write(f'"{text}",{["neg", "neu", "pos"][row % 3]}\n')
    old_tree = scratch / "before"
    subprocess.run(["git", "worktree", "add", "--detach", str(old_tree), before], cwd=ROOT, check=True, capture_output=True)
    measured = {}
    try:
        for route, tree in (("datasets.map (this tree)", ROOT), (f"Python lists ({before})", old_tree),
                            ("datasets.map, cached (this tree, again)", ROOT)):
            # the student learns from hidden states with the teacher run every step (no cache): 20 steps, not a pass
            # over 400k rows for the teacher's logits
            cache = scratch / ("cache" if tree == ROOT else "cache-before")
            recipe = {"name": "memory", "task": "text-classification", "output_dir": str(scratch / f"run-{len(measured)}"),
                      "cache_dir": str(cache), "runtime": {"teacher_cache_mb": 0},
                      "data": {"train": str(csv), "validation_fraction": 0.005, "max_length": 64, "max_eval_examples": 500},
                      "teacher": {"finetune": {"max_steps": 20}},
                      "students": [{"name": "student", "layers": 3, "objectives": {"hidden": {}}, "train": {"max_steps": 20}}],
                      "eval": {"latency_repeats": 2}}
            path = scratch / f"memory-{len(measured)}.yaml"
            path.write_text(yaml.safe_dump(recipe))
            done = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path)], capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": str(tree)})
            if done.returncode != 0:
                raise SystemExit(done.stderr[-2000:])
            peak, seconds = map(float, done.stdout.split("PEAK")[-1].split())
            measured[route] = {"peak_rss_mb": round(peak), "seconds": round(seconds)}
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, capture_output=True)
    return {"rows": rows, "csv_mb": round(csv.stat().st_size / 2**20, 1), "routes": measured}


def memory_table(entry: dict) -> str:
    lines = [f"A {entry['rows']:,}-row CSV ({entry['csv_mb']} MB) read, tokenised (max length 64), the teacher fine-tuned "
             "20 steps, a 3-layer student distilled 20 steps (hidden states), both scored on 500 held-out rows, each "
             "route in a fresh process:", "", "| route | peak resident memory MB | wall s |", "|---|---|---|"]
    lines += [f"| {route} | {row['peak_rss_mb']:,} | {row['seconds']} |" for route, row in entry["routes"].items()]
    return "\n".join(lines)


PARTS = {"conll": (conll, conll_table, "CoNLL-2003 NER: teacher vs 3-layer students"),
         "sst2": (sst2, sst2_table, "SST-2: the generic keys against the preset"),
         "memory": (memory, memory_table, "Memory of a 400k-row file")}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--part", choices=[*PARTS, "all"], default="all")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    path = args.out / "tasks.json"
    machine = f"{platform.machine()}, {psutil.cpu_count()} cores, torch {torch.__version__}"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    for part in PARTS if args.part == "all" else [args.part]:
        with tempfile.TemporaryDirectory() as scratch:
            entry = {**PARTS[part][0](args.data, Path(scratch)), "machine": machine, "commit": commit,
                     "command": f"python bench/tasks.py --data DATA --part {part}"}
        args.out.mkdir(parents=True, exist_ok=True)
        entries = json.loads(path.read_text()) if path.is_file() else {}  # read now: parts may run side by side
        entries[part] = entry
        path.write_text(json.dumps(entries, indent=1) + "\n")
    write_report(args.out)


def write_report(out: Path) -> None:
    """tasks.md from every part's entry in tasks.json."""
    entries = json.loads((out / "tasks.json").read_text())
    sections = [f"## {PARTS[part][2]}\n\nCommand: `{entry['command']}` (commit {entry['commit']}; {entry['machine']})\n\n"
                + PARTS[part][1](entry) for part, entry in entries.items()]
    (out / "tasks.md").write_text("# Your own data: token classification, the generic path, large files\n\n"
                                       + "\n\n".join(sections) + "\n")


if __name__ == "__main__":
    main()
