"""Deployment (issue 20): the quickstart's teacher and students in every export format, measured in one process.

The quickstart recipe (SST-2, 8,000 training sentences, the default teacher fine-tuned on them, 3 lower layers
distilled with logit KD) plus a 3 x 192 ETD student, with `export.formats: [pytorch, onnx, onnx-int8,
torch-int8]`. Every artifact is scored on the full SST-2 dev set from its files and timed in alternation with
all the others at batch 1 and 32 (real dev sentences, warm-up excluded, the thread count stated), so every
speed-up is over the PyTorch fp32 teacher measured in the same loop.

    python bench/deploy.py --data ../shared/data      # about 8 minutes on 2 CPU cores

onnx-int8 has one int8 scale per output channel of each weight, onnx-int8-tensor one per weight matrix.

Target: the ONNX int8 3-layer student >= 4x faster than the PyTorch fp32 teacher at batch 1 and at batch 32,
within 1 point of the PyTorch student's accuracy.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import torch

from bequest.config import load_config
from bequest.pipeline import run_recipe
from bequest.results_table import deployment_caption, deployment_rows

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ["pytorch", "onnx", "onnx-int8", "onnx-int8-tensor", "torch-int8"]
KD = {"kd": {"alpha": 0.5, "temperature": 2.0}}
TRAIN = {"epochs": 3, "batch_size": 32, "learning_rate": 1e-4}
STUDENTS = [{"name": "student", "layers": 3, "init": "lower", "objectives": KD, "train": TRAIN},
            {"name": "etd-3x192", "layers": 3, "init": "lower", "extract": {"hidden_size": 192}, "objectives": KD,
             "train": TRAIN}]


def target(rows: dict) -> str:
    int8, student = rows[("student", "onnx-int8")], rows[("student", "pytorch")]
    speed = min(int8["speedup"].values())
    drop = (student["dev"]["accuracy"] - int8["dev"]["accuracy"]) * 100
    met = speed >= 4 and drop <= 1
    return (f"ONNX int8 3-layer student: {int8['speedup']['1']:.2f}x at batch 1, {int8['speedup']['32']:.2f}x at batch 32 "
            f"over the PyTorch fp32 teacher; accuracy {int8['dev']['accuracy']:.4f} against the PyTorch student's "
            f"{student['dev']['accuracy']:.4f} ({drop:+.2f} points lost). Target (>= 4x at both, within 1 point): "
            f"{'met' if met else 'not met'}.")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run directory here (default: a temporary one)")
    args = parser.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        where = args.keep or Path(scratch)
        overrides = [("data.dir", str(args.data / "glue")), ("students", STUDENTS), ("export.formats", FORMATS),
                     ("eval.latency_repeats", args.repeats), ("output_dir", str(where / "run")),
                     ("cache_dir", str(where / "cache"))]
        results = run_recipe(load_config(ROOT / "recipes" / "quickstart.yaml", overrides))
    deploy = results["deploy"]
    entry = {"deploy": deploy, "commit": commit, "wall_minutes": round((time.perf_counter() - started) / 60, 1),
             "machine": f"{platform.machine()}, {psutil.cpu_count()} cores, torch {torch.__version__}",
             "command": f"python bench/deploy.py --data DATA --repeats {args.repeats}"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "deploy.json").write_text(json.dumps(entry, indent=1) + "\n")
    columns, rows = deployment_rows(deploy, "accuracy")
    table = "\n".join(["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns), *("| " + " | ".join(r) + " |" for r in rows)])
    (args.out / "deploy.md").write_text(f"""# Deployment: the quickstart's models in every format

`{entry['command']}` (commit {commit}; {entry['machine']}; {entry['wall_minutes']} min). SST-2 dev (872 sentences)
accuracy of each artifact, scored from its files; {deployment_caption(deploy)}.

{table}

{target({(r['model'], r['format']): r for r in deploy['rows']})}
""")
    print((args.out / "deploy.md").read_text())


if __name__ == "__main__":
    main()
