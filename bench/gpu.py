"""Training throughput on a CUDA GPU (issue 21): bequest beside transformers' Trainer, in bf16 and fp16.

One command, under 8 minutes on one GPU: the teacher's fine-tuning and the logit-KD 3-layer student of
bench/throughput.py (the quickstart's teacher and student, SST-2), each by bequest and by the Trainer
route (KD `compute_loss` with the teacher inside it, batches grouped by length, fused AdamW), in bf16
and in fp16 with the grad scaler, bequest also with torch.compile, at batch 32 (the recipes') and at a
large batch (what a GPU needs to be busy). Each row gives examples/s, the ratio to the Trainer row of
the same setting, precision and batch, dev accuracy, and the fraction of the GPU's peak: the FLOPs of
the trained model's forward and backward on real tokens per second, over a bf16 (or fp16) matmul's
rate measured in the same process.

    python bench/gpu.py --data ../shared/data                    # on a machine with a CUDA GPU
    python bench/gpu.py --data ../shared/data --cpu --out /tmp/x # the same code on the CPU, tiny, to check it runs

Target: >= 40% of the GPU's bf16 peak for the teacher's fine-tuning.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import BATCH, markdown_table, matmul_peak_gflops, measure, setup_run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def plan(large: int, precisions: list[str]) -> list[tuple[str, str, dict]]:
    """(setting, method, options) rows, bequest and the Trainer alternating."""
    rows = []
    for batch in (BATCH, large):
        for precision in precisions:
            options = {"precision": precision, "batch": batch}
            rows += [("finetune", f"bequest, {precision}, batch {batch}", options),
                     ("finetune", f"Trainer, {precision}, batch {batch}", options),
                     ("kd", f"bequest, {precision}, batch {batch}", options),
                     ("kd", f"Trainer, {precision}, batch {batch}", options)]
        rows.append(("kd", f"bequest, {precisions[0]}, torch.compile, batch {batch}",
                     {"precision": precisions[0], "batch": batch, "compile": True}))
    return rows


def table(rows: list[dict]) -> list[dict]:
    out = []
    for row in rows:
        peer = next((r for r in rows if r["setting"] == row["setting"] and r["method"].startswith("Trainer")
                     and r["precision"] == row["precision"] and r["batch_size"] == row["batch_size"]), None)
        out.append({"setting": row["setting"], "method": row["method"], "ex/s": row["ex_per_s"],
                    "x_trainer": round(row["ex_per_s"] / peer["ex_per_s"], 2) if peer else None,
                    "dev accuracy": row["dev_accuracy"], "fraction of peak": row["fraction_of_limit"]})
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--train-examples", type=int, default=20000)
    parser.add_argument("--large-batch", type=int, default=256)
    parser.add_argument("--cpu", action="store_true", help="run on the CPU, tiny (256 examples, bf16 only): checks the script")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        sys.exit("bench/gpu.py needs a CUDA GPU (or --cpu to check the script on the CPU)")
    device = "cpu" if args.cpu else "cuda"
    examples, large = (256, 64) if args.cpu else (args.train_examples, args.large_batch)
    precisions = ["bf16"] if args.cpu else ["bf16", "fp16"]
    started = time.perf_counter()
    setup = setup_run(args.data, examples)
    size = 1024 if args.cpu else 8192
    peak = {name: matmul_peak_gflops(dtype, size=size, device=device)
            for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16))
            if name != "fp16" or not args.cpu}
    print(f"matmul peak GFLOP/s: {peak}", file=sys.stderr)
    rows = []
    for setting, method, options in plan(large, precisions):
        rows.append(measure(setup, setting, method, options, seed=1, epochs=1, peak=peak))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    summary = table(rows)
    entry = {"device": name, "peak_gflops": peak, "commit": commit, "train_examples": examples,
             "minutes": round((time.perf_counter() - started) / 60, 1), "table": summary, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(entry, indent=1) + "\n")
    (args.out / "gpu.md").write_text(f"""# Training throughput on {name}

`python bench/gpu.py {' '.join(sys.argv[1:] if argv is None else argv)}` (commit {commit}, {entry['minutes']} min, {examples}
SST-2 training sentences, 1 epoch per row). Matmul peak measured here (GFLOP/s): {', '.join(f'{k} {v:.0f}' for k, v in peak.items())}.

{markdown_table(summary)}

- fraction of peak: the trained model's forward and backward FLOPs on real tokens per second, over the
  row's precision's matmul peak. Target: >= 0.40 for the teacher's fine-tuning in bf16.
""")
    print((args.out / "gpu.md").read_text())


if __name__ == "__main__":
    main()
