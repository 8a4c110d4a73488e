"""Two levers on the CPU training step that throughput.py's profile pointed at (issue 21), measured on their own.

- `embedding-rows`: the AdamW step, gradient zeroing and clipping norm run over all 30,522 rows of the word
  embedding matrix although only the rows of tokens the training data holds can get a gradient. This trains a
  student whose embedding holds only those rows (ids remapped on the way in; the other rows would only decay)
  against the full one: logit KD, fp32 and bf16, alternating, in one process.
- `allocator`: what keeping freed memory in the process (bequest/train/allocator.py) costs in peak memory and
  buys in speed, KD + hidden + attention, each run in a fresh process with and without it, alternating.

    python bench/step_levers.py --data ../shared/data      # about 20 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput  # noqa: E402  (the benchmark's setup, runner and table)

ROOT = Path(__file__).resolve().parents[1]


def seen_rows_only(init, ids: torch.Tensor):
    """`init_student` whose student embeds only the token ids `ids` (the others map nowhere)."""
    def wrapped(teacher, how, layers, seed):
        model, info = init(teacher, how, layers, seed)
        full = model.get_input_embeddings()
        remap = torch.full((full.num_embeddings,), -1, dtype=torch.long)
        remap[ids] = torch.arange(len(ids))
        small = nn.Embedding(len(ids), full.embedding_dim)
        small.weight.data.copy_(full.weight.data[ids])
        small.register_forward_pre_hook(lambda module, args: (remap[args[0]],))
        model.set_input_embeddings(small)
        return model, info
    return wrapped


def embedding_rows(args) -> list[dict]:
    setup = throughput.setup_run(args.data, args.train_examples)
    subset = {**setup, "train": setup["train"].select(range(args.train_examples))}
    ids = sorted({token for row in subset["train"].inputs["input_ids"] for token in row} | {setup["pad"]})
    full_init = throughput.init_student
    compact_init = seen_rows_only(full_init, torch.tensor(ids))
    rows = []
    for rep in range(args.reps):
        for variant, init in (("all rows", full_init), ("seen rows only", compact_init)):
            throughput.init_student = init
            for precision in ("fp32", "bf16"):
                result = throughput.bequest_run(subset, "kd", rep, 1, precision=precision)
                rows.append({"lever": "embedding-rows", "variant": variant, "precision": precision, "seed": rep,
                             "rows": len(ids) if init is compact_init else setup["student_config"].vocab_size,
                             "ex_per_s": round(result["examples"] / result["train_seconds"], 1)})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    throughput.init_student = full_init
    return rows


def allocator_child(args) -> None:
    """One run in this process: KD + hidden + attention, with or without freed memory kept."""
    import bequest.train.runtime as runtime
    if args.child == "without":
        runtime.keep_freed_memory = lambda: False
    setup = throughput.setup_run(args.data, args.train_examples)
    result = throughput.bequest_run(setup, "kd+hidden+attention", 0, 1, precision=args.precision)
    print(json.dumps({"lever": "allocator", "variant": f"{args.child} kept freed memory", "precision": args.precision,
                      "ex_per_s": round(result["examples"] / result["train_seconds"], 1),
                      "peak_rss_mb": result["peak_rss_mb"], "added_rss_mb": result["added_rss_mb"]}))


def allocator(args) -> list[dict]:
    rows = []
    for precision in ("bf16", "fp32"):
        for rep in range(args.process_reps):
            for variant in ("without", "with"):
                command = [sys.executable, __file__, "--data", str(args.data), "--train-examples", str(args.train_examples),
                           "--child", variant, "--precision", precision]
                done = subprocess.run(command, capture_output=True, text=True, check=True)
                rows.append({**json.loads(done.stdout.strip().splitlines()[-1]), "seed": rep})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def summary(rows: list[dict]) -> list[dict]:
    keys = dict.fromkeys((r["lever"], r["variant"], r["precision"]) for r in rows)
    table = []
    for lever, variant, precision in keys:
        group = [r for r in rows if (r["lever"], r["variant"], r["precision"]) == (lever, variant, precision)]
        table.append({"lever": lever, "variant": variant, "precision": precision, "runs": len(group),
                      "ex/s": " / ".join(str(r["ex_per_s"]) for r in group),
                      "mean ex/s": round(statistics.mean(r["ex_per_s"] for r in group), 1),
                      "peak RSS MB": " / ".join(str(r["peak_rss_mb"]) for r in group) if "peak_rss_mb" in group[0] else None})
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--train-examples", type=int, default=3200)
    parser.add_argument("--reps", type=int, default=3, help="alternating runs per embedding-rows variant")
    parser.add_argument("--process-reps", type=int, default=2, help="fresh processes per allocator variant")
    parser.add_argument("--child", choices=["with", "without"], help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="bf16", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    if args.child:
        return allocator_child(args)
    started = time.perf_counter()
    rows = embedding_rows(args) + allocator(args)
    table = summary(rows)
    vocabulary = max(r["rows"] for r in rows if "rows" in r)
    seen = min(r["rows"] for r in rows if "rows" in r)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "step_levers.json").write_text(json.dumps({"table": table, "rows": rows, "machine": throughput.machine_id()},
                                                          indent=1) + "\n")
    (args.out / "step_levers.md").write_text(f"""# Two levers on the CPU training step, measured alone

`python bench/step_levers.py {' '.join(sys.argv[1:])}` ({(time.perf_counter() - started) / 60:.1f} min), on
{throughput.machine_id()}. {args.train_examples} SST-2 sentences, 1 epoch, the throughput benchmark's teacher,
student and hyper-parameters. Runs alternate; ex/s of each run in order.

{throughput.markdown_table(table)}

- embedding-rows: logit KD with a student whose word embedding holds only the rows of the token ids in the
  training data and the pad id ({seen:,}), against all {vocabulary:,} rows.
- allocator: KD + hidden + attention, each run in a fresh process, with and without bequest's raised glibc
  malloc thresholds; peak RSS is the process's.
""")


if __name__ == "__main__":
    main()
