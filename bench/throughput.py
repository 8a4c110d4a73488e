"""Training throughput: bequest against transformers' Trainer (issue 21), TextBrewer and a plain loop (issue 4).

Same teacher (the default MiniLM-L6 fine-tuned by the quickstart recipe on 8,000 SST-2
sentences), same 3-layer student from its layers 0-2, same data, batch size, optimiser
settings, schedule, clipping and loss weights, one process, methods alternating within each
repetition (the seed changes between repetitions). Three settings:

- `kd`: logit KD (T=2, alpha=0.5);
- `kd+hidden+attention`: KD + hidden-state MSE (layers 0-3 -> 0,2,4,6) + attention KL (layers 0-2 -> 1,3,5);
- `finetune`: the teacher's own fine-tuning (task loss, 6 layers), from the pretrained checkpoint.

The Trainer is the route a user takes without bequest: a KD `compute_loss` with the teacher's forward
inside it, batches grouped by length, fused AdamW, in bf16 and fp32. TextBrewer and the plain loop draw
random batches padded to their longest example (their usual data loader); bequest groups batches by
length (its default). Each row reports the training loop's examples/s (one-off teacher passes that
fill bequest's caches are timed separately, and included in `end_to_end_ex_per_s`), the ratio to the
Trainer at the same precision (`x_trainer`), the dev accuracy after the run, the peak resident memory,
and the fraction of the machine's limit: the FLOPs the run could not avoid (student forward and
backward over real tokens only, no teacher: it can be cached) at the matmul peak of the row's precision
measured in this process. `--profile` adds torch.profiler's table of bequest's bf16 KD step.

    python bench/throughput.py --data ../shared/data --profile     # about 1.5 hours on 2 CPU cores
    python bench/throughput.py --methods bequest "Trainer, bf16"   # only these rows; the others are kept
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch
import torch.nn.functional as F
from transformers import get_linear_schedule_with_warmup

from bequest.config import ObjectivesConfig, RuntimeConfig, TrainConfig, load_config
from bequest.data.features import model_inputs, training_batches
from bequest.eval.predict import predict
from bequest.init.layers import init_student
from bequest.kinds import CLASSIFICATION, evaluate
from bequest.objectives import losses
from bequest.objectives.terms import build_terms
from bequest.pipeline import check_inputs
from bequest.train.distiller import Distiller
from bequest.train.loop import train
from bequest.train.runtime import make_accelerator, resolved_precision
from bequest.train.teacher_outputs import cache_teacher_outputs, teacher_reads

ROOT = Path(__file__).resolve().parents[1]
ALPHA, TEMPERATURE, LR, BATCH = 0.5, 2.0, 1e-4, 32
INTERMEDIATE = {"kd": {"alpha": ALPHA, "temperature": TEMPERATURE}, "hidden": {}, "attention_kl": {}}


# ------------------------------------------------------------------ measuring


class PeakMemory:
    """Peak resident memory of this process while the block runs, sampled every 5 ms."""

    def __enter__(self):
        self.process, self.peak, self.running = psutil.Process(), 0, True
        self.start = self.process.memory_info().rss
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()

    @property
    def mb(self) -> dict:
        return {"peak_rss_mb": round(self.peak / 2**20), "added_rss_mb": round((self.peak - self.start) / 2**20)}


def matmul_peak_gflops(dtype: torch.dtype, size: int = 2048, repeats: int = 10, device: str = "cpu") -> float:
    """The best of `repeats` square matmuls: the machine's practical peak for `dtype`."""
    a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def train_flops(config, lengths: list[int]) -> float:
    """Forward + backward (3x forward) FLOPs of `config`'s encoder over real tokens only:
    2 x linear weights per token, plus QK^T and AV (4 x length x width per token and layer)."""
    width, ffn, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_token = 2 * layers * (4 * width * width + 2 * width * ffn)
    return 3 * sum(n * per_token + 4 * layers * n * n * width for n in lengths)


# ------------------------------------------------------------------ the three implementations


def decay_groups(model):
    decay = [p for p in model.parameters() if p.ndim >= 2]
    return [{"params": decay, "weight_decay": 0.01}, {"params": [p for p in model.parameters() if p.ndim < 2], "weight_decay": 0.0}]


def random_batches(setup, seed: int, epochs: int) -> list[dict]:
    """What a DataLoader with shuffling and dynamic padding gives: the order bequest draws from, ungrouped."""
    data = setup["train"]
    batches = [data.batch(b, setup["pad"]) for epoch in range(epochs) for b in training_batches(data.lengths, BATCH, seed, epoch, False)]
    return [{k: v for k, v in batch.items() if k != "index"} for batch in batches]


def eager(model):
    """A copy that returns attention maps (output_attentions needs the eager kernels)."""
    model = copy.deepcopy(model)
    model.set_attn_implementation("eager")
    return model


def bequest_run(setup, setting: str, seed: int, epochs: int, *, group: bool = True, precision: str = "auto",
                compile: bool = False, cache_mb: float = 2048, profiler=None, batch: int = BATCH) -> dict:
    teacher, data = setup["teacher"], setup["train"]
    accelerator = make_accelerator(RuntimeConfig(precision=precision, compile=compile))
    cfg = TrainConfig(epochs=epochs, batch_size=batch, learning_rate=LR, group_by_length=group)  # bequest's defaults otherwise
    with tempfile.TemporaryDirectory() as scratch, PeakMemory() as memory:
        if setting == "finetune":
            model = copy.deepcopy(setup["pretrained"])
            started = time.perf_counter()
            log = train(model, data, lambda m, b: CLASSIFICATION.loss(m(**model_inputs(b)).logits, b["labels"]), cfg, seed=seed,
                        pad_token_id=setup["pad"], accelerator=accelerator, checkpoint_dir=Path(scratch), desc="bequest")
            fill = 0.0
        else:
            model, _ = init_student(teacher, "lower", 3, seed)
            objectives = {"kd": {"alpha": ALPHA, "temperature": TEMPERATURE}} if setting == "kd" else INTERMEDIATE
            terms = build_terms(ObjectivesConfig.model_validate(objectives), model.config, teacher.config)
            started = time.perf_counter()
            soft = torch.from_numpy(predict(teacher, data, 64, setup["pad"], desc="teacher logits"))
            internals = None
            if teacher_reads(terms):
                internals, note = cache_teacher_outputs(teacher, data, teacher_reads(terms), cache_mb, 64, setup["pad"])
                print(note, file=sys.stderr)
            fill = time.perf_counter() - started
            with profiler or contextlib.nullcontext():
                log = train(Distiller(model, terms, teacher, soft, internals), data, lambda m, b: m(b), cfg, seed=seed,
                            pad_token_id=setup["pad"], accelerator=accelerator, checkpoint_dir=Path(scratch), desc="bequest")
        total = time.perf_counter() - started
    return {"train_seconds": log["seconds"], "cache_fill_seconds": fill, "total_seconds": total,
            "examples": log["examples"], "model": model, **memory.mb}


def textbrewer_run(setup, setting: str, seed: int, epochs: int) -> dict:
    import textbrewer
    from textbrewer import DistillationConfig, GeneralDistiller, TrainingConfig

    batches = random_batches(setup, seed, 1)
    total_steps = epochs * len(batches)
    attention = setting == "kd+hidden+attention"

    def adaptor(batch, out):
        result = {"logits": out.logits, "losses": [out.loss] if out.loss is not None else [],
                  "inputs_mask": batch["attention_mask"]}
        if attention:  # log-probabilities are scores whose softmax is the attention map
            result["hidden"] = out.hidden_states
            result["attention"] = [torch.log(a.clamp_min(1e-30)) for a in out.attentions]
        return result

    with tempfile.TemporaryDirectory() as scratch, PeakMemory() as memory:
        train_config = TrainingConfig(device="cpu", log_dir=scratch, output_dir=scratch, ckpt_frequency=1)
        if setting == "finetune":
            model = copy.deepcopy(setup["pretrained"])
            runner = textbrewer.BasicTrainer(train_config, model, adaptor)
        else:
            model, _ = init_student(setup["teacher"], "lower", 3, seed)
            teacher = setup["teacher"]
            matches = None
            if attention:
                model, teacher = eager(model), eager(teacher)
                matches = ([{"layer_T": t, "layer_S": s, "feature": "hidden", "loss": "hidden_mse", "weight": 1} for s, t in setup["hidden_pairs"]]
                           + [{"layer_T": t, "layer_S": s, "feature": "attention", "loss": "attention_ce", "weight": 1} for s, t in setup["attention_pairs"]])
            # kd_ce has no T^2 factor: weighting it by alpha*T^2 gives bequest's loss (up to a constant)
            distill_config = DistillationConfig(temperature=TEMPERATURE, hard_label_weight=1 - ALPHA, kd_loss_type="ce",
                                                kd_loss_weight=ALPHA * TEMPERATURE**2, intermediate_matches=matches)
            runner = GeneralDistiller(train_config, distill_config, teacher, model, adaptor, adaptor)
        if attention:
            batches = [b | {"output_hidden_states": True, "output_attentions": True} for b in batches]
        optimizer = torch.optim.AdamW(decay_groups(model), lr=LR)
        started = time.perf_counter()
        with runner:
            runner.train(optimizer, batches, num_epochs=epochs, max_grad_norm=1.0, scheduler_class=get_linear_schedule_with_warmup,
                         scheduler_args={"num_warmup_steps": int(0.1 * total_steps), "num_training_steps": total_steps})
        seconds = time.perf_counter() - started
    return {"train_seconds": seconds, "cache_fill_seconds": 0.0, "total_seconds": seconds,
            "examples": epochs * len(setup["train"]), "model": model, **memory.mb}


def step_loss(setup, setting: str, teacher, out, inputs: dict, labels: torch.Tensor) -> torch.Tensor:
    """The loss as a user computes it each step: the teacher's forward inside it (hidden states and attention
    maps too for the intermediate setting), bequest's formulas."""
    if setting == "finetune":
        return CLASSIFICATION.loss(out.logits, labels)
    attention = setting == "kd+hidden+attention"
    with torch.no_grad():
        target = teacher(**inputs, output_hidden_states=attention, output_attentions=attention)
    loss = CLASSIFICATION.kd_loss(out.logits, target.logits, labels, ALPHA, TEMPERATURE)
    mask = inputs["attention_mask"]
    for s, t in setup["hidden_pairs"] if attention else ():
        loss = loss + losses.hidden_mse(out.hidden_states[s], target.hidden_states[t], mask)
    for s, t in setup["attention_pairs"] if attention else ():
        log_s, log_t = (torch.log(a.clamp_min(1e-30)) for a in (out.attentions[s], target.attentions[t]))
        loss = loss + losses.distribution_kl(F.log_softmax(log_s, -1), F.log_softmax(log_t, -1), mask)
    return loss


def plain_run(setup, setting: str, seed: int, epochs: int) -> dict:
    """The loop a user writes first: teacher every step, default AdamW, random batches."""
    batches = random_batches(setup, seed, epochs)
    attention = setting == "kd+hidden+attention"
    teacher = eager(setup["teacher"]) if attention else setup["teacher"]
    if setting == "finetune":
        model = copy.deepcopy(setup["pretrained"])
    else:
        model, _ = init_student(setup["teacher"], "lower", 3, seed)
        model = eager(model) if attention else model
    optimizer = torch.optim.AdamW(decay_groups(model), lr=LR)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.1 * len(batches)), len(batches))
    torch.manual_seed(seed)
    model.train()
    with PeakMemory() as memory:
        started = time.perf_counter()
        for batch in batches:
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            out = model(**inputs, output_hidden_states=attention, output_attentions=attention)
            loss = step_loss(setup, setting, teacher, out, inputs, batch["labels"])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        seconds = time.perf_counter() - started
    return {"train_seconds": seconds, "cache_fill_seconds": 0.0, "total_seconds": seconds,
            "examples": epochs * len(setup["train"]), "model": model, **memory.mb}


def trainer_run(setup, setting: str, seed: int, epochs: int, *, precision: str = "fp32", batch: int = BATCH) -> dict:
    """transformers' Trainer with a KD `compute_loss`, the route of the transformers KD guide and of setfit's and
    TRL's distillation trainers: the teacher's forward inside the loss every step, batches grouped by length,
    fused AdamW, bf16 through the Trainer's own autocast when asked; otherwise the same settings as bequest's
    rows (batch 32, lr 1e-4, 10% warm-up then linear decay, weight decay 0.01 off biases and LayerNorms,
    clipping at 1.0)."""
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    data, attention = setup["train"], setting == "kd+hidden+attention"
    rows = {**data.inputs, "labels": data.labels}
    dataset = Dataset.from_dict(rows | {"length": data.lengths})
    if setting == "finetune":
        model, teacher = copy.deepcopy(setup["pretrained"]), None
    else:
        model, _ = init_student(setup["teacher"], "lower", 3, seed)
        teacher = eager(setup["teacher"]) if attention else setup["teacher"]
        model = eager(model) if attention else model

    class KDTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            out = model(**inputs, output_hidden_states=attention, output_attentions=attention)
            loss = step_loss(setup, setting, teacher, out, inputs, labels)
            return (loss, out) if return_outputs else loss

    with tempfile.TemporaryDirectory() as scratch, PeakMemory() as memory:
        args = TrainingArguments(output_dir=scratch, per_device_train_batch_size=batch, learning_rate=LR,
                                 num_train_epochs=epochs, warmup_steps=0.1, lr_scheduler_type="linear",
                                 weight_decay=0.01, max_grad_norm=1.0, optim="adamw_torch_fused",
                                 train_sampling_strategy="group_by_length", bf16=precision == "bf16",
                                 fp16=precision == "fp16", use_cpu=not torch.cuda.is_available(),
                                 seed=seed, save_strategy="no", logging_strategy="no", report_to="none",
                                 disable_tqdm=True, remove_unused_columns=False, dataloader_num_workers=0)
        runner = KDTrainer(model=model, args=args, train_dataset=dataset,
                           data_collator=DataCollatorWithPadding(setup["tokenizer"]))
        if teacher is not None:
            teacher.to(runner.args.device).eval()
        started = time.perf_counter()
        runner.train()
        seconds = time.perf_counter() - started
    return {"train_seconds": seconds, "cache_fill_seconds": 0.0, "total_seconds": seconds,
            "examples": epochs * len(data), "model": model, **memory.mb}


# ------------------------------------------------------------------ the benchmark


def setup_run(data_dir: Path, train_examples: int) -> dict:
    config = load_config(ROOT / "recipes" / "quickstart.yaml",
                         [("data.dir", str(data_dir / "glue")), ("data.max_train_examples", train_examples)])
    accelerator = make_accelerator(config.runtime)
    inputs = check_inputs(config, accelerator)
    run, work = inputs.run, inputs.run.workload
    pretrained = copy.deepcopy(inputs.teacher)
    teacher, _ = work.ready_teacher(run.tokenizer, accelerator, inputs.teacher, inputs.teacher_has_head)
    teacher = accelerator.unwrap_model(teacher, keep_fp32_wrapper=False).eval()
    student, _ = init_student(teacher, "lower", 3, 0)
    terms = build_terms(ObjectivesConfig.model_validate(INTERMEDIATE), student.config, teacher.config)
    return {"config": config, "task": work.task, "train": work.train, "dev": work.dev, "pad": run.pad, "teacher": teacher,
            "tokenizer": run.tokenizer,
            "pretrained": pretrained, "student_config": student.config,
            "hidden_pairs": terms["hidden"][1].pairs, "attention_pairs": terms["attention_kl"][1].pairs}


FP32, BF16 = {"precision": "fp32"}, {"precision": "bf16"}
TRAINER = [("Trainer, bf16", BF16), ("Trainer, fp32", FP32)]
VARIANTS = {
    "kd": [("bequest", {}), ("bequest, fp32", FP32), *TRAINER, ("bequest, fp32, random batches", {**FP32, "group": False}),
           ("bequest, fp32, torch.compile", {**FP32, "compile": True}), ("TextBrewer", {}), ("plain loop", {})],
    "kd+hidden+attention": [("bequest", {}), ("bequest, fp32", FP32), *TRAINER,
                            ("bequest, fp32, teacher every step", {**FP32, "cache_mb": 0}), ("TextBrewer", {}), ("plain loop", {})],
    "finetune": [("bequest", {}), ("bequest, fp32", FP32), *TRAINER, ("TextBrewer", {}), ("plain loop", {})],
}
RUNNERS = {"bequest": bequest_run, "Trainer": trainer_run, "TextBrewer": textbrewer_run, "plain loop": plain_run}


def measure(setup, setting: str, method: str, options: dict, seed: int, epochs: int, peak: dict) -> dict:
    runner = RUNNERS[method.split(",")[0]]
    print(f"== {setting} | {method} | seed {seed}", file=sys.stderr, flush=True)
    result = runner(setup, setting, seed, epochs, **options)
    model = result.pop("model")
    dev = evaluate(model.eval(), setup["task"], setup["dev"], 64, setup["pad"])
    config = setup["teacher"].config if setting == "finetune" else setup["student_config"]
    limit_flops = train_flops(config, setup["train"].lengths) * epochs  # the work no implementation can skip
    ex_per_s = result["examples"] / result["train_seconds"]
    precision = options.get("precision", "fp32")
    if runner is bequest_run:
        precision = resolved_precision(RuntimeConfig(precision=options.get("precision", "auto")))
    gflops = peak[precision]
    return {
        "setting": setting, "method": method, "precision": precision, "seed": seed, "epochs": epochs, "examples": result["examples"],
        "batch_size": options.get("batch", BATCH), "learning_rate": LR, "max_length": setup["config"].data.max_length,
        "train_seconds": round(result["train_seconds"], 2), "cache_fill_seconds": round(result["cache_fill_seconds"], 2),
        "ex_per_s": round(ex_per_s, 1), "end_to_end_ex_per_s": round(result["examples"] / result["total_seconds"], 1),
        "dev_accuracy": round(dev["accuracy"], 4), "peak_rss_mb": result["peak_rss_mb"], "added_rss_mb": result["added_rss_mb"],
        "limit_ex_per_s": round(result["examples"] / (limit_flops / (gflops * 1e9)), 1),
        "fraction_of_limit": round(limit_flops / result["train_seconds"] / (gflops * 1e9), 3),
        "peak_gflops_used": round(gflops, 1),
    }


def summarise(rows: list[dict]) -> list[dict]:
    table = []
    for setting in VARIANTS:
        mine = [r for r in rows if r["setting"] == setting]

        def mean_ex_per_s(method, precision=None):
            values = [r["ex_per_s"] for r in mine if r["method"] == method and precision in (None, r["precision"])]
            return statistics.mean(values) if values else None

        for method, _ in VARIANTS[setting]:
            group = [r for r in mine if r["method"] == method]
            if not group:
                continue
            speed = statistics.mean(r["ex_per_s"] for r in group)
            trainer = mean_ex_per_s(f"Trainer, {group[0]['precision']}")
            textbrewer = mean_ex_per_s("TextBrewer")

            def spread(key, digits):
                values = [r[key] for r in group]
                mean = statistics.mean(values)
                return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"

            table.append({"setting": setting, "method": method, "precision": group[0]["precision"],
                          "epochs": group[0]["epochs"], "runs": len(group), "ex/s": spread("ex_per_s", 1),
                          "x_trainer": round(speed / trainer, 2) if trainer else None,
                          "x TextBrewer": f"{speed / textbrewer:.2f}" if textbrewer else "-",
                          "end-to-end ex/s": spread("end_to_end_ex_per_s", 1), "dev accuracy": spread("dev_accuracy", 4),
                          "peak RSS MB": f"{max(r['peak_rss_mb'] for r in group)}",
                          "fraction of limit": spread("fraction_of_limit", 3), "commit": group[0].get("commit", "-")})
    return table


def profile_step(setup, steps: int = 40) -> str:
    """Where the time of bequest's bf16 logit-KD step goes: torch.profiler's operator table over `steps`
    training steps (the teacher's logits are computed before the profiler starts, as they are cached)."""
    from torch.profiler import ProfilerActivity, profile

    subset = {**setup, "train": setup["train"].select(range(min(len(setup["train"]), steps * BATCH)))}
    profiler = profile(activities=[ProfilerActivity.CPU])
    bequest_run(subset, "kd", 1, 1, profiler=profiler)
    return profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=40)


def load_rows(path: Path) -> list[dict]:
    return json.loads(path.read_text())["rows"] if path.exists() else []


def machine_id() -> str:
    """What a row's speed depends on besides the code: rows are compared only with rows of the same one."""
    return f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def peak_line(peak: dict) -> str:
    return f"matmul peak measured here: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s"


def markdown_table(table: list[dict]) -> str:
    header = list(table[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("-" if row[h] is None else str(row[h]) for h in header) + " |" for row in table]
    return "\n".join(lines)


def write_results(rows, peak, command: str, seconds, out: Path, profile: str | None) -> None:
    """Write the tables, one per machine (ratios are taken within a machine only); rows of (setting,
    method) pairs this run did not measure are kept from the last file, with their commit and machine."""
    out.mkdir(parents=True, exist_ok=True)
    measured = {(r["setting"], r["method"]) for r in rows}
    kept = [r for r in load_rows(out / "throughput.json") if (r["setting"], r["method"]) not in measured]
    everything = rows + kept
    previous = json.loads((out / "throughput.json").read_text()) if (out / "throughput.json").exists() else {}
    profile = profile or (previous.get("profile") if isinstance(previous, dict) else None)
    machines = list(dict.fromkeys([machine_id(), *(r.get("machine", "an earlier machine, not recorded") for r in everything)]))
    tables = {m: summarise([r for r in everything if r.get("machine", "an earlier machine, not recorded") == m]) for m in machines}
    (out / "throughput.json").write_text(json.dumps({"tables": tables, "rows": everything, "profile": profile,
                                                     "peak_gflops": peak}, indent=1) + "\n")
    sections = "\n\n".join(f"### {machine}\n\n{markdown_table(table)}" for machine, table in tables.items() if table)
    text = f"""# Training throughput: bequest vs transformers' Trainer, TextBrewer and a plain loop

Last command: `{command}` ({seconds / 60:.1f} min), on {machine_id()}; {peak_line(peak)}.
A command measures only the methods it names and keeps the others' rows, with their commit; rows are
compared (x_trainer, x TextBrewer) only with rows of the same machine. Mean ± standard deviation over
the repetitions (seeds), methods alternating within each.

{sections}

- ex/s: examples per second of the training loop; end-to-end adds the one-off teacher passes
  that fill bequest's logit and teacher-output caches (paid once per dataset, shared by later epochs and runs).
- x_trainer: ex/s over the Trainer row's of the same setting and precision.
- fraction of limit: the FLOPs no implementation can skip (the trained model's forward and backward
  on real tokens; the teacher's outputs can be cached) per second, over the matmul peak of the row's precision.
- bequest's rows without "fp32" run its defaults: `runtime.precision: auto` resolves to bf16 on a CPU with
  native bf16 (AMX or AVX512-BF16).
- The Trainer: a `compute_loss` with the teacher's forward inside it, `train_sampling_strategy="group_by_length"`,
  `optim="adamw_torch_fused"`, `bf16=True` or fp32, the same hyper-parameters.
- TextBrewer and the plain loop draw random batches padded to the batch's longest example; bequest groups them by length.
- Attention objectives outside bequest need the models' attention maps, so they run the eager attention kernels.

## Where a bequest bf16 logit-KD step's time goes (torch.profiler, CPU)

```
{profile or "not profiled"}
```
"""
    (out / "throughput.md").write_text(text)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--train-examples", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--reps", type=int, nargs=3, default=[2, 2, 1], metavar=("KD", "INTERMEDIATE", "FINETUNE"))
    parser.add_argument("--settings", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--methods", nargs="+", default=None, help="measure only these methods (default: all)")
    parser.add_argument("--profile", action="store_true", help="profile bequest's bf16 KD step")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    command = "python bench/throughput.py " + " ".join(sys.argv[1:] if argv is None else argv)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    started = time.perf_counter()
    setup = setup_run(args.data, args.train_examples)
    peak = {"fp32": matmul_peak_gflops(torch.float32), "bf16": matmul_peak_gflops(torch.bfloat16)}
    print(f"matmul peak: {peak}", file=sys.stderr)
    profile = profile_step(setup) if args.profile else None
    rows = []
    for setting, reps in zip(VARIANTS, args.reps):
        if setting not in args.settings:
            continue
        for rep in range(reps):
            for method, options in VARIANTS[setting]:
                if args.methods and method not in args.methods:
                    continue
                rows.append(measure(setup, setting, method, options, seed=rep + 1, epochs=args.epochs, peak=peak)
                            | {"commit": commit, "machine": machine_id()})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
                write_results(rows, peak, command, time.perf_counter() - started, args.out, profile)


if __name__ == "__main__":
    main()
