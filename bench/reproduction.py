"""The papers' claims on our data (issue 9): the reproduction sweeps in recipes/reproduce/, several
seeds each, plus ETD's compute claim, in one table.

- How to Distill your BERT: lower vs upper teacher layers as the start of a 3-layer student, for
  logit KD, KD + hidden states and KD + attention KL (recipes/reproduce/how-to-distill.yaml).
- WID vs KD at equal size: a 3 x 192 WID student against ETD-Impt / ETD-Rand students of the
  same shape trained with logit KD (recipes/reproduce/wid.yaml).
- Pea-KD: SPS, PTP and both against plain KD + PKD on a 3-layer student (recipes/reproduce/peakd.yaml),
  on SST-2 and on all of MRPC's training set (peakd-mrpc.sweep.yaml).
- ETD: the fraction of a random start's task-agnostic MiniLMv2 steps an extracted student of the
  same shape needs to reach the random start's final held-out loss (bench/etd.py's setting,
  held-out loss only).

Each sweep runs through `bequest sweep`, into sweeps/reproduce/ under the current folder (run it
from the repository root); finished runs are skipped, so an interrupted benchmark continues where
it stopped, and sweeps a user already ran are reused. Differences are paired by seed: the students of one seed share
their teacher. Results: bench/results/reproduction.{json,md,png}.

    python bench/reproduction.py --data ../shared/data          # about 2 hours 10 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import psutil  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import etd  # noqa: E402

from bequest.config import CorpusConfig, RuntimeConfig  # noqa: E402
from bequest.data.corpus import load_segments, split_segments  # noqa: E402
from bequest.models.loading import load_encoder, load_tokenizer  # noqa: E402
from bequest.sweep import plan, run_sweep  # noqa: E402
from bequest.train.runtime import make_accelerator  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes" / "reproduce"
# question -> (sweep file, [(variant, baseline)] compared pairwise per seed)
SWEEPS = {
    "how-to-distill": ("how-to-distill.sweep.yaml",
                       [("lower-kd", "upper-kd"), ("lower-hidden", "upper-hidden"), ("lower-attention", "upper-attention")]),
    "wid": ("wid.sweep.yaml", [("wid-3x192", "etd-impt-3x192"), ("wid-3x192", "etd-rand-3x192")]),
    "peakd": ("peakd.sweep.yaml", [("sps", "kd"), ("ptp", "kd"), ("sps-ptp", "kd")]),
    "peakd-mrpc": ("peakd-mrpc.sweep.yaml", [("sps", "kd"), ("ptp", "kd"), ("sps-ptp", "kd")]),
}


def sweep_rows(question: str, data: Path) -> list[dict]:
    """Run (or finish) one reproduction sweep; one row per model and seed."""
    path = RECIPES / SWEEPS[question][0]
    overrides = [("data.dir", str(data / "glue"))]
    run_sweep(path, overrides)
    rows = []
    for _, _, config in plan(path, overrides)[1]:
        results = json.loads((config.run_dir / "results.json").read_text())
        metric = results["main_metric"]
        for name, row in [("teacher", results["teacher"]), *results["students"].items()]:
            rows.append({"question": question, "task": results["task"], "model": name, "seed": config.seed,
                         "metric": metric, "score": row["dev"][metric], "parameters": row["parameters"],
                         "layers": row["num_layers"], "hidden": row.get("hidden_size"), "latency_ms": row["latency_ms"],
                         "train_seconds": row.get("train_seconds"), "run_dir": str(config.run_dir)})
    return rows


def etd_rows(data: Path, seeds: list[int], steps: int, points: int) -> list[dict]:
    """bench/etd.py's three starts, held-out loss only, for each seed."""
    accelerator = make_accelerator(RuntimeConfig())
    teacher = load_encoder(etd.TEACHER).eval()
    tokenizer = load_tokenizer(etd.TEACHER, teacher.config)
    corpus = CorpusConfig(files=[str(data / "wiki")], max_length=128)
    segments, _ = load_segments(corpus, tokenizer, 128, Path.home() / ".cache" / "bequest")
    rows = []
    for seed in seeds:
        args = argparse.Namespace(seed=seed, hidden=192, steps=steps, points=points, downstream=1, lr=5e-4)
        train_segments, heldout = split_segments(segments, 256, steps * 32, seed)
        for start in etd.STARTS:
            measured = [r for r in etd.distil(start, teacher, tokenizer, train_segments, heldout, {}, args, accelerator)
                        if "step" in r]
            rows += [{"question": "etd", "model": start, "seed": seed, "step": r["step"], "heldout_loss": r["heldout_loss"],
                      "parameters": r["parameters"], "distill_seconds": r["distill_seconds"]} for r in measured]
    return rows


def mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def _mean_or_dash(values: list[float]) -> str:
    return f"{statistics.mean(values):.0f}" if values else "- (cached)"


def score_tables(rows: list[dict]) -> list[str]:
    lines = []
    for question, (_, pairs) in SWEEPS.items():
        mine = [r for r in rows if r["question"] == question]
        if not mine:
            continue
        metric = mine[0]["metric"]
        lines += [f"### {question} ({mine[0]['task']}, dev {metric}, seeds {sorted({r['seed'] for r in mine})})", "",
                  f"| model | layers x hidden | parameters | dev {metric} | retained | latency ms | training s |",
                  "|---|---|---|---|---|---|---|"]
        teacher = {r["seed"]: r["score"] for r in mine if r["model"] == "teacher"}
        for model in dict.fromkeys(r["model"] for r in mine):
            group = [r for r in mine if r["model"] == model]
            retained = [r["score"] / teacher[r["seed"]] for r in group]
            lines.append(f"| {model} | {group[0]['layers']} x {group[0]['hidden']} | {group[0]['parameters'] / 1e6:.1f}M | "
                         f"{mean_sd([r['score'] for r in group])} | {statistics.mean(retained):.3f} | "
                         f"{statistics.mean(r['latency_ms'] for r in group):.0f} | "
                         f"{_mean_or_dash([r['train_seconds'] for r in group if r['train_seconds'] is not None])} |")
        lines += ["", "| comparison | difference per seed | mean ± sd |", "|---|---|---|"]
        for variant, baseline in pairs:
            by_seed = {r["seed"]: r["score"] for r in mine if r["model"] == baseline}
            diffs = [r["score"] - by_seed[r["seed"]] for r in mine if r["model"] == variant and r["seed"] in by_seed]
            lines.append(f"| {variant} - {baseline} | {', '.join(f'{d:+.4f}' for d in diffs)} | {mean_sd(diffs)} |")
        lines.append("")
    return lines


def etd_table(rows: list[dict], steps: int) -> list[str]:
    mine = [r for r in rows if r["question"] == "etd"]
    if not mine:
        return []
    seeds = sorted({r["seed"] for r in mine})
    lines = [f"### etd (MiniLMv2 on Wikipedia, 3 x 192 students, {steps} steps of 32 x 128 tokens, seeds {seeds})", "",
             "| start | held-out loss at 0 | final held-out loss | fraction of the random start's steps to its final loss |",
             "|---|---|---|---|"]
    for start in etd.STARTS:
        first, final, fractions = [], [], []
        for seed in seeds:
            curve = [(r["step"], r["heldout_loss"]) for r in mine if r["model"] == start and r["seed"] == seed]
            target = [r["heldout_loss"] for r in mine if r["model"] == "random" and r["seed"] == seed][-1]
            reach = etd.steps_to_reach(curve, target, lower_is_better=True)
            first.append(curve[0][1])
            final.append(curve[-1][1])
            fractions.append("-" if reach is None else f"{reach / steps:.2f}")
        lines.append(f"| {start} | {mean_sd(first)} | {mean_sd(final)} | {', '.join(fractions)} |")
    return lines + [""]


def plot(rows: list[dict], out: Path) -> None:
    figure, axes = plt.subplots(1, len(SWEEPS) + 1, figsize=(5 * len(SWEEPS) + 5, 4.5))
    for ax, question in zip(axes, SWEEPS):
        mine = [r for r in rows if r["question"] == question]
        models = list(dict.fromkeys(r["model"] for r in mine))
        for x, model in enumerate(models):
            scores = [r["score"] for r in mine if r["model"] == model]
            ax.bar(x, statistics.mean(scores), color="lightgray")
            ax.scatter([x] * len(scores), scores, color="black", s=12, zorder=3)
        ax.set_xticks(range(len(models)), models, rotation=30, ha="right")
        if mine:
            lows = [r["score"] for r in mine]
            ax.set_ylim(min(lows) - 0.03, max(lows) + 0.02)
            ax.set(title=f"{question} ({mine[0]['task']})", ylabel=f"dev {mine[0]['metric']}")
    measured = [r for r in rows if r["question"] == "etd"]
    for seed in sorted({r["seed"] for r in measured}):
        for start, color in zip(etd.STARTS, plt.cm.tab10.colors):
            curve = [r for r in measured if r["model"] == start and r["seed"] == seed]
            axes[-1].plot([r["step"] for r in curve], [r["heldout_loss"] for r in curve], marker="o", color=color,
                         label=f"{start}, seed {seed}", alpha=0.5 if seed % 2 else 1.0)
    axes[-1].set(title="etd: held-out MiniLMv2 loss", xlabel="distillation steps", ylabel="loss")
    if measured:
        axes[-1].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out / "reproduction.png", dpi=100)
    plt.close(figure)


def write(rows: list[dict], args, seconds: float, command: str) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reproduction.json").write_text(json.dumps(rows, indent=1) + "\n")
    plot(rows, args.out)
    machine = f"{platform.machine()}, {psutil.cpu_count()} cores, torch {torch.__version__}"
    text = [
        "# Reproductions: the papers' claims at a size that runs on a CPU", "",
        f"Command: `{command}`  ",
        f"Machine: {machine}. Wall time: {seconds / 60:.1f} min (runs already finished by an earlier, interrupted "
        "invocation are not re-run and not counted).  ",
        "Plot: `reproduction.png` (bars: means, dots: seeds).  ",
        "Recipes: `recipes/reproduce/*.yaml` (each with its sweep file); the run directories are under "
        "`sweeps/reproduce/`. Differences are paired by seed (a seed's students share its teacher). Written by hand: "
        "`docs/results.md` says what these numbers mean for each claim.", "",
        *score_tables(rows), *etd_table(rows, args.etd_steps),
    ]
    (args.out / "reproduction.md").write_text("\n".join(text))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--only", nargs="+", choices=[*SWEEPS, "etd"], default=[*SWEEPS, "etd"])
    parser.add_argument("--etd-seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--etd-steps", type=int, default=150)
    parser.add_argument("--etd-points", type=int, default=5, help="held-out loss measurements during distillation")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    command = "python bench/reproduction.py " + " ".join(sys.argv[1:] if argv is None else argv)
    started, rows = time.perf_counter(), []
    for question in args.only:
        rows += etd_rows(args.data, args.etd_seeds, args.etd_steps, args.etd_points) if question == "etd" else \
            sweep_rows(question, args.data)
        write(rows, args, time.perf_counter() - started, command)  # after each part: an interruption keeps what is done


if __name__ == "__main__":
    main()
