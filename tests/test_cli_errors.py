"""Bad input through the real `bequest` command: one clear line, exit code 2, nothing lost.

The project rule: bad input gets ONE line on stderr, starting with "error: ", that says what is
wrong (naming the key, path, task or index) and how to fix it; the exit code is 2; there is never
a traceback; and nothing already on disk is deleted, overwritten or half-written (a refused run
does not even create its run directory).

Every case runs the `bequest` command (`bequest.cli.main`, what the executable runs) in a process
of its own, in a folder of its own. Importing torch and transformers costs seconds per process, so
the processes are forked from zygotes that imported them once (tests/zygote.py), and the refusals
are launched together, a few at a time, by the module fixture `outcomes`; each case is still its
own test, which checks its own outcome. The help tests run the installed executable itself. A case is a builder
that writes whatever inputs the case needs into its folder and returns the command line and the
strings the error line must contain. Its folder (and any folder it `watch`es) is snapshotted
just before the command starts and compared after it ends: a refusal must leave it byte for
byte and mtime for mtime as it was.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import yaml
from conftest import tiny_recipe, write_tiny_encoder
from zygote import Zygote

BEQUEST = Path(sys.executable).parent / "bequest"
PARALLEL = max(2, min(8, os.cpu_count() or 2))
TIMEOUT_S = 300


# ------------------------------------------------------------------ running the command


def cli_env(cache: Path) -> dict[str, str]:
    return {
        **os.environ,
        "BEQUEST_CACHE": str(cache),
        # No case needs the network; offline makes a stray hub lookup fail fast instead of hanging.
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }


def bequest(*args, cwd: Path, cache: Path, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([str(BEQUEST), *map(str, args)], cwd=cwd, env=cli_env(cache), input=stdin,
                          capture_output=True, text=True, timeout=TIMEOUT_S)


def mount_tmpfs(path: Path, size: str, read_only: bool = False) -> bool:
    """A small file system at `path` (a full disk, or a read-only folder even root cannot write); False where
    this machine does not let the tests mount one."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode == 0


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every file and folder under `roots`, with each file's bytes and mtime."""
    seen = {}
    for root in roots:
        if not root.exists():
            seen[str(root)] = ("absent",)
            continue
        for path in sorted([root, *root.rglob("*")]):
            if path.is_dir():
                seen[str(path)] = ("dir",)
            else:
                seen[str(path)] = ("file", path.read_bytes(), path.stat().st_mtime_ns)
    return seen


def describe_changes(before: dict, after: dict) -> str:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    return f"added {added}, removed {removed}, changed {changed}"


def assert_one_line_error(result: subprocess.CompletedProcess, needles: list[str]) -> str:
    shown = f"exit code {result.returncode}\n--- stdout:\n{result.stdout}\n--- stderr:\n{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr, shown
    assert result.returncode == 2, shown
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"stderr must be exactly one line, got {len(lines)}:\n{shown}"
    line = lines[0]
    assert line.startswith("error: ") and line.strip() != "error:", shown
    assert result.stdout.strip() == "", f"a refusal prints nothing on stdout:\n{shown}"
    for needle in needles:
        if needle.startswith("!"):
            assert needle[1:] not in line, f"the error line should not be about {needle[1:]!r}:\n{line}"
        elif needle.isdigit():  # a number must stand on its own, not inside a path or another number
            assert re.search(rf"(?<![\w/.-]){needle}(?![\w/-]|\.\w)", line), f"the error line does not name {needle}:\n{line}"
        else:
            assert needle in line, f"the error line does not name {needle!r}:\n{line}"
    return line


# ------------------------------------------------------------------ cases


@dataclass
class Shared:
    """Inputs that several cases read (never write)."""

    teacher: Path
    glue: Path
    finished: Path  # folder holding recipe.yaml and run/ of one tiny run that went to the end


class CannotMount(Exception):
    """This machine does not let the tests mount a tmpfs: the case is skipped."""


@dataclass
class Ctx:
    """What a case builder gets: its own empty folder, the shared inputs, and helpers."""

    dir: Path
    shared: Shared
    watched: list[Path] = field(default_factory=list)
    mounts: list[Path] = field(default_factory=list)
    stdin: str = ""  # what the user would type, were a prompt shown
    may_add: bool = False  # the command fails after starting work: it may add files, never change existing ones

    @property
    def teacher(self) -> Path:
        return self.shared.teacher

    @property
    def glue(self) -> Path:
        return self.shared.glue

    @property
    def run_dir(self) -> Path:
        return self.dir / "run"

    def recipe(self, mutate: Callable[[dict], None] | None = None, **extra) -> Path:
        """The tiny recipe (run dir `<case>/run`, cache `<case>/cache`), optionally edited."""
        path = tiny_recipe(self.dir, self.teacher, self.glue, **extra)
        if mutate is not None:
            raw = yaml.safe_load(path.read_text())
            mutate(raw)
            path.write_text(yaml.safe_dump(raw))
        return path

    def watch(self, path: Path) -> Path:
        self.watched.append(path)
        return path

    def mount(self, name: str, size: str, read_only: bool = False) -> Path:
        path = self.dir / name
        if not mount_tmpfs(path, size, read_only):
            raise CannotMount(path)
        self.mounts.append(path)
        return path

    def glue_copy(self) -> Path:
        """A private copy of the tiny glue_data folder's SST-2, to damage."""
        root = self.dir / "glue"
        shutil.copytree(self.glue / "SST-2", root / "SST-2")
        return root


@dataclass
class Case:
    id: str
    # -> (command-line args, strings the error line must contain; "!text": must not contain text)
    build: Callable[[Ctx], tuple[list, list[str]]]


@dataclass
class Outcome:
    result: subprocess.CompletedProcess
    needles: list[str]
    before: dict
    after: dict
    may_add: bool = False
    args: list = field(default_factory=list)
    dir: Path | None = None


CASES: dict[str, list[Case]] = {}


def cases(group: str, *items: Case) -> list[Case]:
    CASES[group] = list(items)
    return CASES[group]


# 1. The recipe file itself.


def _bad_file(name: str, content: str | bytes):
    def build(ctx: Ctx):
        path = ctx.dir / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return ["run", path], [str(path)]
    return build


def _missing_recipe(ctx: Ctx):
    path = ctx.dir / "no-such-recipe.yaml"
    return ["run", path], [str(path), "not found"]


RECIPE_FILE_CASES = cases(
    "recipe-file",
    Case("recipe-missing", _missing_recipe),
    Case("recipe-not-yaml", _bad_file("broken.yaml", "task: sst2\nstudents: [\n  - layers: 2\nseed: 7\n")),
    Case("recipe-is-a-yaml-list", _bad_file("list.yaml", "- task: sst2\n- seed: 7\n")),
    # beyond the brief:
    Case("recipe-not-utf8", _bad_file("latin1.yaml", "task: sst2\nname: caf\xe9\n".encode("latin-1"))),
)
RECIPE_FILE_NEEDLES = {"recipe-not-yaml": ["YAML"], "recipe-is-a-yaml-list": ["list"]}


# 2. Keys and values, in the recipe and through --set.


def _nested(path: str, value):
    def mutate(raw: dict) -> None:
        node = raw
        *parents, last = path.split(".")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        node[last] = value
    return mutate


def _in_recipe(key: str, value, needles: list[str]):
    def build(ctx: Ctx):
        return ["run", ctx.recipe(_nested(key, value))], needles
    return build


def _with_set(assignment: str, needles: list[str]):
    def build(ctx: Ctx):
        return ["run", ctx.recipe(), "--set", assignment], needles
    return build


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


RECIPE_KEY_CASES = cases(
    "recipe-keys",
    Case("recipe-unknown-top-key", _in_recipe("trian", 1, ["trian", "unknown key"])),
    Case("recipe-unknown-nested-key", _in_recipe("students.0.trian", {"epochs": 1}, ["students.0.trian", "unknown key"])),
    Case("recipe-seed-not-int", _in_recipe("seed", "abc", ["seed", "abc"])),
    Case("recipe-alpha-above-1", _in_recipe("students.0.objectives.kd.alpha", 2, ["students.0.objectives.kd.alpha", "2"])),
    Case("set-unknown-top-key", _with_set("trian=1", ["trian", "unknown key"])),
    Case("set-unknown-nested-key", _with_set("students.0.trian=1", ["students.0.trian", "unknown key"])),
    Case("set-seed-not-int", _with_set("seed=abc", ["seed", "abc"])),
    Case("set-alpha-above-1", _with_set("students.0.objectives.kd.alpha=2", ["students.0.objectives.kd.alpha", "2"])),
    Case("set-without-equals", _with_set("seed", ["--set", "seed", "key=value"])),
    Case("set-index-out-of-range", _with_set("students.5.layers=1", ["students", "5"])),
    # beyond the brief:
    Case("set-value-not-yaml", _with_set("seed=[1", ["seed"])),
    Case("set-unknown-precision", _with_set("runtime.precision=fp8", ["runtime.precision", "fp8"])),
    *([] if _has_cuda() else [Case("set-fp16-without-gpu", _with_set("runtime.precision=fp16", ["fp16", "CUDA GPU", "bf16"]))]),
)


# 3. The data folder.


def _data_dir_missing(ctx: Ctx):
    missing = ctx.dir / "nonexistent"
    return ["run", ctx.recipe(), "--data-dir", missing], [str(missing)]


def _data_dir_without_task(ctx: Ctx):
    root = ctx.dir / "glue"
    (root / "MRPC").mkdir(parents=True)
    return ["run", ctx.recipe(), "--data-dir", root], [str(root / "SST-2")]


def _task_dir_without_dev(ctx: Ctx):
    root = ctx.glue_copy()
    (root / "SST-2" / "dev.tsv").unlink()
    return ["run", ctx.recipe(), "--data-dir", root], [str(root / "SST-2" / "dev.tsv")]


def _bad_row(split: str, row: str, line: int, *more: str):
    def build(ctx: Ctx):
        root = ctx.glue_copy()
        path = root / "SST-2" / f"{split}.tsv"
        assert len(path.read_text(encoding="utf-8").splitlines()) == line - 1
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(row)
        return ["run", ctx.recipe(), "--data-dir", root], [str(path), f"line {line}", *more]
    return build


def _squad_folder(ctx: Ctx, dev_file: str) -> Path:
    root = ctx.dir / "squad"
    root.mkdir()
    (root / "dev-v1.1.json").write_text(dev_file)
    return root


SQUAD_ARTICLE = {"title": "x", "paragraphs": [{"context": "Paris.", "qas": [
    {"id": "1", "question": "Where?", "answers": [{"text": "Paris", "answer_start": 0}]}]}]}


def _squad_without_train(ctx: Ctx):
    root = _squad_folder(ctx, json.dumps({"data": [SQUAD_ARTICLE]}))
    return ["run", ctx.recipe(task="squad"), "--data-dir", root], ["train-v1.1.json", "data.split_by_article"]


def _squad_not_json(ctx: Ctx):
    root = _squad_folder(ctx, '{"data": [')
    return ["run", ctx.recipe(task="squad"), "--data-dir", root, "--set", "data.split_by_article=0.5"], [
        str(root / "dev-v1.1.json"), "JSON"]


def _transfer(task: str, content: str | None, needles: list[str], suffix: str = ".txt"):
    """data.transfer naming a file with `content` (None: a file that does not exist)."""
    def build(ctx: Ctx):
        path = ctx.dir / f"unlabelled{suffix}"
        if content is not None:
            path.write_text(content, encoding="utf-8")
        ctx.may_add = suffix != ".txt"  # datasets shows its progress reading a table, and caches it
        return ["run", ctx.recipe(task=task), "--set", f"data.transfer={path}"], [str(path), *needles]
    return build


DATA_CASES = cases(
    "data",
    Case("data-dir-missing", _data_dir_missing),
    Case("data-dir-without-task-folder", _data_dir_without_task),
    Case("task-folder-without-dev", _task_dir_without_dev),
    # tiny_glue's train.tsv: header + 160 rows; dev.tsv: header + 48 rows
    Case("row-with-wrong-column-count", _bad_row("train", "a fine film\t1\textra\n", 162)),
    Case("unknown-label", _bad_row("dev", "a fine film\t5\n", 50, "'5'")),
    Case("squad-without-train-file", _squad_without_train),
    Case("squad-file-not-json", _squad_not_json),
    Case("transfer-file-missing", _transfer("sst2", None, ["data.transfer", "not found"])),
    Case("transfer-text-file-for-pairs", _transfer("mrpc", "a sentence\n", ["data.transfer", "pairs", "data.text_pair_column"])),
    Case("transfer-table-without-the-column", _transfer("sst2", "sentence,x\nfine,1\n", ["data.transfer", "'text'",
                                                                                        "data.text_column"], ".csv")),
    Case("transfer-text-file-empty", _transfer("sst2", "\n \n", ["data.transfer", "no text"])),
    Case("split-by-article-on-glue", _in_recipe("data.split_by_article", 0.2, ["data.split_by_article", "SQuAD"])),
)


# 4. The task.

TASK_CASES = cases(
    "task",
    Case("unknown-task", _with_set("task=foo", ["task", "foo"])),
)


# 5. The teacher.


def _teacher(make: Callable[[Path], Path], *more: str):
    def build(ctx: Ctx):
        path = make(ctx.dir)
        return ["run", ctx.recipe(), "--set", f"teacher.model={path}"], [str(path), *more]
    return build


def _missing_folder(root: Path) -> Path:
    return root / "no-such-teacher"


def _empty_folder(root: Path) -> Path:
    (root / "empty-teacher").mkdir()
    return root / "empty-teacher"


def _gpt2(root: Path) -> Path:
    from transformers import GPT2Config, GPT2Model

    config = GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=100, bos_token_id=0, eos_token_id=0)
    GPT2Model(config).save_pretrained(root / "gpt2")
    return root / "gpt2"


def _no_weights(root: Path) -> Path:
    folder = write_tiny_encoder(root / "teacher-without-weights")
    (folder / "model.safetensors").unlink()
    return folder


TEACHER_CASES = cases(
    "teacher",
    Case("teacher-missing", _teacher(_missing_folder)),
    Case("teacher-without-config", _teacher(_empty_folder, "config.json")),
    Case("teacher-is-gpt2", _teacher(_gpt2, "gpt2")),
    # beyond the brief:
    Case("teacher-without-weights", _teacher(_no_weights)),
)


# 6. Student shapes (the tiny teacher has 4 layers).


def _two_students(ctx: Ctx):
    students = [
        {"name": "small", "layers": 2, "init": "lower"},
        {"name": "deep", "layers": 6, "init": "uniform"},
    ]
    return ["run", ctx.recipe(students=students)], ["deep", "6", "4"]


def _extract_without_section(ctx: Ctx):
    return ["extract", ctx.recipe(), "--output", ctx.dir / "out"], ["no student has an extract section"]


STUDENT_CASES = cases(
    "student",
    Case("student-deeper-than-teacher", _with_set("students.0.layers=6", ["6", "4"])),
    Case("layer-index-out-of-range", _with_set("students.0.init=[0,9]", ["9", "0..3"])),
    Case("init-list-contradicts-layers", _with_set("students.0.init=[0,1,2]", ["students.0", "layers", "3"])),
    # beyond the brief: with several students, the line says which one is wrong
    Case("second-student-too-deep", _two_students),
    Case("extract-width-not-whole-heads", _with_set("students.0.extract={hidden_size: 20}", ["extract.hidden_size 20", "head size 16", "multiple of 16"])),
    Case("extract-wider-than-teacher", _with_set("students.0.extract={hidden_size: 64}", ["extract.hidden_size 64", "32"])),
    Case("extract-heads-contradict-width", _with_set("students.0.extract={hidden_size: 16, num_attention_heads: 2}",
                                                      ["num_attention_heads 2", "hidden_size 32"])),
    Case("extract-unknown-scorer", _with_set("students.0.extract={scorer: fisher}", ["extract.scorer 'fisher'", "taylor"])),
    Case("extract-from-random-init", lambda ctx: (["run", ctx.recipe(), "--set", "students.0.init=random", "--set",
                                                   "students.0.extract={hidden_size: 16}"], ["extract", "init lower"])),
    Case("extract-without-extract-section", _extract_without_section),
    Case("wid-not-whole-heads", _with_set("students.0.wid={hidden_size: 20, strategy: head}", ["wid.hidden_size 20", "multiple of 16"])),
    Case("wid-and-extract", lambda ctx: (["run", ctx.recipe(), "--set", "students.0.wid={hidden_size: 16}", "--set",
                                          "students.0.extract={hidden_size: 16}"], ["extract (ETD) and wid", "choose one"])),
    Case("sps-with-wid", lambda ctx: (["run", ctx.recipe(), "--set", "students.0.wid={hidden_size: 16}", "--set",
                                       "students.0.sps={mode: paper}"], ["sps", "wid", "choose one"])),
    Case("sps-unknown-mode", _with_set("students.0.sps={mode: shuffled}", ["students.0.sps.mode", "paper", "stochastic"])),
    Case("ptp-on-regression", lambda ctx: (["run", ctx.recipe(), "--set", "task=stsb", "--set",
                                            "students.0.objectives={ptp: {}}"], ["objective ptp", "regression"])),
    Case("wid-schedule-too-long", _with_set("students.0.wid={hidden_size: 16}", ["wid.w_step=50", "800 steps", "at most"])),
)


# 7. The run directory.


def _existing_run_dir(*flags: str, recipe_file: bool = False):
    def build(ctx: Ctx):
        ctx.run_dir.mkdir()
        (ctx.run_dir / "notes.txt").write_text("precious results\n")
        if recipe_file:
            (ctx.run_dir / "recipe.yaml").write_text("task: sst2\n")
        return ["run", ctx.recipe(), *flags], [str(ctx.run_dir)]
    return build


def _resume_missing(ctx: Ctx):
    return ["run", ctx.recipe(), "--resume"], [str(ctx.run_dir)]


def _resume_and_overwrite(ctx: Ctx):
    return ["run", ctx.recipe(), "--resume", "--overwrite"], ["--resume", "--overwrite"]


def _resume_other_recipe(ctx: Ctx):
    finished = ctx.watch(ctx.shared.finished)
    return ["run", finished / "recipe.yaml", "--resume", "--set", "seed=8"], [str(finished / "run")]


def _overwrite_finished_with_bad_data(ctx: Ctx):
    shutil.copytree(ctx.shared.finished / "run", ctx.run_dir)
    missing = ctx.dir / "nonexistent"
    return ["run", ctx.recipe(), "--overwrite", "--data-dir", missing], [str(missing)]


def _output_dir_named(name: str):
    def build(ctx: Ctx):
        # --output-dir takes a path, whatever it looks like; the run must get as far as the
        # student check and be refused there, not for its output directory.
        return ["run", ctx.recipe(), "--output-dir", name, "--set", "students.0.layers=6"], ["6", "4", "!output_dir"]
    return build


RUN_DIR_CASES = cases(
    "run-dir",
    Case("run-dir-exists", _existing_run_dir()),
    Case("overwrite-foreign-dir", _existing_run_dir("--overwrite")),
    Case("resume-missing-dir", _resume_missing),
    Case("resume-foreign-dir", _existing_run_dir("--resume")),
    Case("resume-with-another-recipe", _resume_other_recipe),
    # beyond the brief:
    Case("resume-and-overwrite", _resume_and_overwrite),
    Case("overwrite-finished-run-with-bad-input", _overwrite_finished_with_bad_data),
    Case("output-dir-named-2024", _output_dir_named("2024")),
)


# 8. Tokenizer against teacher vocabulary.

SMALL_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "good", "bad", "movie", "film", "fine"]


def _small_tokenizer(folder: Path) -> Path:
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(SMALL_VOCAB) + "\n")
    words = (folder / "vocab.txt").read_text().split()
    # transformers 5 ignores vocab_file=; the vocabulary is passed as a mapping
    BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}).save_pretrained(folder)
    return folder


def _tokenizer(with_config: bool):
    def build(ctx: Ctx):
        folder = _small_tokenizer(ctx.dir / "small-tokenizer")
        if with_config:
            shutil.copy(ctx.teacher / "config.json", folder / "config.json")
        return ["run", ctx.recipe(), "--set", f"teacher.tokenizer={folder}"], [str(folder), "vocabulary"]
    return build


def _vocab_too_small(ctx: Ctx):
    teacher = write_tiny_encoder(ctx.dir / "teacher-vocab-100", vocab_size=100)
    return ["run", ctx.recipe(), "--set", f"teacher.model={teacher}"], [str(teacher), "100"]


TOKENIZER_CASES = cases(
    "tokenizer",
    Case("tokenizer-folder-with-other-vocab", _tokenizer(with_config=False)),
    Case("tokenizer-model-folder-with-other-vocab", _tokenizer(with_config=True)),
    Case("teacher-vocab-smaller-than-tokenizer", _vocab_too_small),
)


# 9. bequest evaluate.


def _eval_missing_folder(ctx: Ctx):
    folder = ctx.dir / "no-such-model"
    return ["evaluate", folder, "--task", "sst2", "--data-dir", ctx.glue], [str(folder)]


def _eval_unknown_task(ctx: Ctx):
    student = ctx.watch(ctx.shared.finished / "run" / "student")
    return ["evaluate", student, "--task", "foo", "--data-dir", ctx.glue], ["foo"]


def _eval_output_exists(default_path: bool):
    def build(ctx: Ctx):
        model = ctx.dir / "model"
        shutil.copytree(ctx.shared.finished / "run" / "student", model)
        output = model / "eval_sst2.json" if default_path else ctx.dir / "scores.json"
        output.write_text('{"keep": "these scores"}\n')
        more = [] if default_path else ["--output", output]
        return ["evaluate", model, "--task", "sst2", "--data-dir", ctx.glue, *more], [str(output)]
    return build


def _eval_data_missing(ctx: Ctx):
    student = ctx.watch(ctx.shared.finished / "run" / "student")
    missing = ctx.dir / "nonexistent"
    return ["evaluate", student, "--task", "sst2", "--data-dir", missing, "--output", ctx.dir / "out.json"], [str(missing)]


def _eval_wrong_head(ctx: Ctx):
    student = ctx.watch(ctx.shared.finished / "run" / "student")
    return ["evaluate", student, "--task", "stsb", "--data-dir", ctx.glue, "--output", ctx.dir / "out.json"], ["stsb"]


EVALUATE_CASES = cases(
    "evaluate",
    Case("evaluate-missing-folder", _eval_missing_folder),
    Case("evaluate-unknown-task", _eval_unknown_task),
    Case("evaluate-default-output-exists", _eval_output_exists(default_path=True)),
    Case("evaluate-given-output-exists", _eval_output_exists(default_path=False)),
    # beyond the brief:
    Case("evaluate-data-dir-missing", _eval_data_missing),
    Case("evaluate-model-without-task-head", _eval_wrong_head),
)


# 10. Safety: code in model folders, weights that do not fit, damaged files.


def _custom_code_teacher(ctx: Ctx):
    """A folder whose config names an unknown model type with an auto_map to a local .py: transformers would
    ask on stdin whether to run it. The user answers "y"; still no code may run."""
    folder = ctx.dir / "custom-code-teacher"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "evilbert", "hidden_size": 32,
                                                    "auto_map": {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}}))
    (folder / "evil.py").write_text(f"open({str(ctx.dir / 'code-ran')!r}, 'w').write('it ran')\n")
    ctx.stdin = "y\ny\n"
    return ["run", ctx.recipe(), "--set", f"teacher.model={folder}"], [str(folder), "evilbert", "never runs code"]


def _teacher_with_edited_config(key: str, value):
    def make(root: Path) -> Path:
        folder = write_tiny_encoder(root / f"teacher-{key}")
        config = json.loads((folder / "config.json").read_text())
        config[key] = value
        (folder / "config.json").write_text(json.dumps(config))
        return folder
    return make


def _truncated_weights(root: Path) -> Path:
    folder = write_tiny_encoder(root / "teacher-truncated")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return folder


def _listed(folder: Path, pattern: str) -> list[Path]:
    """The files matching `pattern` now; [] when a checkpoint's temporary folder was renamed while it was listed."""
    try:
        return list(folder.rglob(pattern))
    except FileNotFoundError:
        return []


def _resume_damaged_checkpoint(ctx: Ctx):
    recipe = ctx.recipe(_nested("students.0.train.checkpoint_every", 3))
    process = subprocess.Popen([str(BEQUEST), "run", str(recipe), "--set", "students.0.train.epochs=40"], cwd=ctx.dir,
                               env=cli_env(ctx.dir / "bequest-cache"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = ctx.run_dir / "checkpoints" / "student"
    deadline = time.time() + TIMEOUT_S
    while time.time() < deadline and not _listed(checkpoints, "checkpoint-*/.bequest-manifest.json"):
        time.sleep(0.05)
    process.kill()
    process.wait()
    checkpoint = next(p for p in checkpoints.rglob("checkpoint-*") if (p / ".bequest-manifest.json").is_file())
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return ["run", recipe, "--set", "students.0.train.epochs=40", "--resume"], [str(checkpoint), "damaged", "delete"]


def _resume_after_data_changed(ctx: Ctx):
    glue = ctx.glue_copy()
    recipe = ctx.recipe(_nested("data.dir", str(glue)))
    done = bequest("run", recipe, cwd=ctx.dir, cache=ctx.dir / "bequest-cache")
    assert done.returncode == 0, done.stderr[-2000:]
    train = glue / "SST-2" / "train.tsv"
    lines = train.read_text(encoding="utf-8").splitlines(keepends=True)
    sentence, label = lines[1].rstrip("\n").split("\t")
    lines[1] = f"{sentence}\t{1 - int(label)}\n"
    train.write_text("".join(lines), encoding="utf-8")
    return ["run", recipe, "--resume"], [str(train), "data changed", "--output-dir"]


def _overwrite_user_folder_with_recipe(ctx: Ctx):
    """A folder of the user's that happens to hold a recipe.yaml is not a run directory."""
    ctx.run_dir.mkdir()
    (ctx.run_dir / "recipe.yaml").write_text("task: sst2\n")
    (ctx.run_dir / "thesis.tex").write_text("\\documentclass{article}\n")
    return ["run", ctx.recipe(), "--overwrite"], [str(ctx.run_dir), "not a bequest run directory"]


def _output_dir_is_a_file(ctx: Ctx):
    ctx.run_dir.write_text("my notes\n")
    return ["run", ctx.recipe()], [str(ctx.run_dir), "is a file"]


def _read_only(where: str):
    def build(ctx: Ctx):
        folder = ctx.mount("read-only", "1m", read_only=True)
        key = "output_dir" if where == "output" else "cache_dir"
        return ["run", ctx.recipe(), "--set", f"{key}={folder / 'inside'}"], [str(folder / "inside"), "not writable"]
    return build


def _disk_full(where: str):
    """A disk with room for the run's first files but not for a checkpoint (output: the student's; cache: the
    teacher's, written while it is fine-tuned)."""
    def build(ctx: Ctx):
        folder = ctx.mount("small-disk", "300k")
        ctx.may_add = True
        key = "output_dir" if where == "output" else "cache_dir"
        return ["run", ctx.recipe(), "--set", f"{key}={folder / 'inside'}"], [str(folder / "inside"), "no space left",
                                                                              "MB free", "run the same command again"]
    return build


def _long_sentence(ctx: Ctx):
    root = ctx.glue_copy()
    with open(root / "SST-2" / "train.tsv", "a", encoding="utf-8") as fh:
        fh.write(" ".join(["word"] * 400) + "\t1\n")
    return ["run", ctx.recipe(), "--data-dir", root, "--set", "data.max_length=256"], ["data.max_length 256", "128"]


def _stsb_one_dev_row(ctx: Ctx):
    root = ctx.dir / "glue"
    shutil.copytree(ctx.glue / "STS-B", root / "STS-B")
    dev = root / "STS-B" / "dev.tsv"
    dev.write_text("".join(dev.read_text(encoding="utf-8").splitlines(keepends=True)[:2]), encoding="utf-8")
    return ["run", ctx.recipe(task="stsb"), "--data-dir", root], [str(dev), "at least 2"]


def _duplicate_key(ctx: Ctx):
    path = ctx.recipe()
    path.write_text(path.read_text() + "seed: 8\n")
    return ["run", path], [str(path), "'seed'", "twice"]


def _report_output_is_file(ctx: Ctx):
    target = ctx.dir / "report.md"
    target.write_text("my report\n")
    return ["report", ctx.watch(ctx.shared.finished / "run"), "--output", target], [str(target), "is a file"]


def _sweep_bad_later_point(ctx: Ctx):
    ctx.recipe()
    sweep = ctx.dir / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"recipe": "recipe.yaml", "output_dir": str(ctx.dir / "sweep"),
                                     "grid": {"students.0.init": [[0, 1], [1, 99]]}}))
    return ["sweep", sweep], ["001-init=", "99", "0..3"]


SAFETY_CASES = cases(
    "safety",
    Case("teacher-with-custom-code", _custom_code_teacher),
    Case("teacher-ffn-config-disagrees-with-weights", _teacher(_teacher_with_edited_config("intermediate_size", 48),
                                                               "intermediate.dense", "[64]", "[48]", "config.json")),
    Case("teacher-weights-truncated", _teacher(_truncated_weights, "damaged")),
    Case("teacher-heads-do-not-divide-width", _teacher(_teacher_with_edited_config("num_attention_heads", 3),
                                                       "hidden_size 32", "num_attention_heads 3")),
    Case("resume-with-damaged-checkpoint", _resume_damaged_checkpoint),
    Case("resume-after-data-changed", _resume_after_data_changed),
)

RUN_DIR_SAFETY_CASES = cases(
    "run-dir-safety",
    Case("overwrite-user-folder-holding-recipe-yaml", _overwrite_user_folder_with_recipe),
    Case("output-dir-is-a-file", _output_dir_is_a_file),
    Case("output-dir-read-only", _read_only("output")),
    Case("cache-dir-read-only", _read_only("cache")),
    Case("output-disk-full-at-checkpoint", _disk_full("output")),
    Case("cache-disk-full-at-teacher-checkpoint", _disk_full("cache")),
)

MORE_RECIPE_CASES = cases(
    "recipe-values",
    Case("seed-negative", _with_set("seed=-1", ["seed", "-1"])),
    Case("seed-above-2-to-the-32", _with_set(f"seed={2**40}", ["seed", str(2**40)])),
    Case("student-named-recipe-yaml", _with_set("students.0.name=recipe.yaml", ["recipe.yaml", "choose another student name"])),
    Case("student-named-results-json", _with_set("students.0.name=results.json", ["results.json", "choose another student name"])),
    Case("student-named-logs", _with_set("students.0.name=logs", ["'logs'", "choose another student name"])),
    Case("duplicate-key-in-recipe", _duplicate_key),
    Case("max-length-beyond-teacher-positions", _long_sentence),
    Case("stsb-dev-with-one-row", _stsb_one_dev_row),
    Case("sweep-impossible-value-in-a-later-point", _sweep_bad_later_point),
)


def _evaluate_with(*flags: str, needles: list[str]):
    def build(ctx: Ctx):
        student = ctx.watch(ctx.shared.finished / "run" / "student")
        return ["evaluate", student, "--task", "sst2", "--data-dir", ctx.glue, "--output", ctx.dir / "out.json", *flags], needles
    return build


MORE_COMMAND_CASES = cases(
    "command-options",
    Case("evaluate-negative-max-length", _evaluate_with("--max-length", "-5", needles=["--max-length", "8"])),
    Case("evaluate-zero-batch-size", _evaluate_with("--batch-size", "0", needles=["--batch-size", "1"])),
    Case("evaluate-max-length-beyond-positions", _evaluate_with("--max-length", "4096", needles=["4096", "128"])),
    Case("report-output-is-a-file", _report_output_is_file),
)


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_teacher, tiny_glue) -> Path:
    """One tiny recipe run to the end (~7 s), for the cases that need an existing run or model."""
    folder = tmp_path_factory.mktemp("finished")
    recipe = tiny_recipe(folder, tiny_teacher, tiny_glue)
    result = bequest("run", recipe, cwd=folder, cache=folder / "cache")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (folder / "run" / "results.json").is_file() and (folder / "run" / "student" / "config.json").is_file()
    return folder


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, tiny_teacher, tiny_glue, finished_run):
    """Build every case in a folder of its own, then run them all, PARALLEL at a time."""
    shared = Shared(teacher=tiny_teacher, glue=tiny_glue, finished=finished_run)
    prepared, skipped, mounts = [], {}, []
    for group in CASES.values():
        for case in group:
            ctx = Ctx(dir=tmp_path_factory.mktemp(case.id), shared=shared)
            try:
                args, needles = case.build(ctx)
            except CannotMount:
                skipped[case.id] = None
                continue
            finally:
                mounts += ctx.mounts
            prepared.append((case.id, ctx, args, needles))

    zygotes = queue.Queue()
    for _ in range(PARALLEL):
        zygotes.put(Zygote())
    scratch = tmp_path_factory.mktemp("zygote-files")

    def launch(item) -> tuple[str, Outcome]:
        case_id, ctx, args, needles = item
        roots = [ctx.dir, *ctx.watched]
        before = snapshot(*roots)
        zygote = zygotes.get()
        try:
            result = zygote.run(args, ctx.dir, cli_env(ctx.dir / "bequest-cache"), ctx.stdin, scratch / case_id)
        finally:
            zygotes.put(zygote)
        return case_id, Outcome(result, needles, before, snapshot(*roots), ctx.may_add, args, ctx.dir)

    # Cases that watch the finished run only read it, so they may run beside each other.
    try:
        with ThreadPoolExecutor(PARALLEL) as pool:
            yield {**dict(pool.map(launch, prepared)), **skipped}
    finally:
        while not zygotes.empty():
            zygotes.get().close()
        for path in mounts:
            unmount(path)


def assert_fails_with_one_error_line(result: subprocess.CompletedProcess, needles: list[str]) -> str:
    """A command that failed after starting work (progress was shown): its last line is the one error line."""
    shown = f"exit code {result.returncode}\n--- stderr:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stdout + result.stderr, shown
    assert result.returncode == 2, shown
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], shown
    assert all(needle in errors[0] for needle in needles), f"the error line does not name all of {needles}:\n{errors[0]}"
    return errors[0]


def check_refused(outcome: Outcome, *more_needles: str) -> str:
    check = assert_fails_with_one_error_line if outcome.may_add else assert_one_line_error
    line = check(outcome.result, [*outcome.needles, *more_needles])
    after = {path: state for path, state in outcome.after.items() if path in outcome.before} if outcome.may_add else outcome.after
    assert after == outcome.before, (
        f"a refused command changed files: {describe_changes(outcome.before, after)}\n{line}"
    )
    return line


# ------------------------------------------------------------------ tests


ALL_CASES = [case for group in CASES.values() for case in group]


@pytest.mark.parametrize("case_id", [case.id for case in ALL_CASES])
def test_bad_input_is_refused_in_one_line(outcomes, case_id):
    """One line, exit 2, no traceback, the culprit named, and the case folder left as it was."""
    if outcomes[case_id] is None:
        pytest.skip("this machine does not let the tests mount a tmpfs")
    check_refused(outcomes[case_id], *RECIPE_FILE_NEEDLES.get(case_id, []))


@pytest.mark.parametrize("case_id", ["output-disk-full-at-checkpoint", "cache-disk-full-at-teacher-checkpoint"])
def test_after_a_full_disk_is_given_room_resume_finishes_the_run(outcomes, case_id):
    outcome = outcomes[case_id]
    if outcome is None:
        pytest.skip("this machine does not let the tests mount a tmpfs")
    disk = outcome.dir / "small-disk"
    assert subprocess.run(["mount", "-o", "remount,size=200m", str(disk)]).returncode == 0
    done = bequest(*outcome.args, "--resume", cwd=outcome.dir, cache=outcome.dir / "bequest-cache")
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = disk / "inside" if case_id.startswith("output") else outcome.dir / "run"
    assert (run_dir / "results.json").is_file() and not list(disk.rglob(".*.tmp"))


def test_case_ids_are_unique():
    ids_ = [case.id for case in ALL_CASES]
    assert len(set(ids_)) == len(ids_)


# 10. Help.


def test_help_lists_commands(tmp_path):
    result = bequest("--help", cwd=tmp_path, cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "run" in result.stdout and "evaluate" in result.stdout


def test_no_arguments_prints_help(tmp_path):
    result = bequest(cwd=tmp_path, cache=tmp_path / "cache")
    shown = result.stdout + result.stderr
    assert "Traceback" not in shown
    assert "Usage" in shown and "run" in shown and "evaluate" in shown, shown
    assert result.returncode in (0, 2), shown  # click exits 2 when no_args_is_help shows the help
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["run", "evaluate"])
def test_subcommand_help(tmp_path, command):
    result = bequest(command, "--help", cwd=tmp_path, cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "Usage" in result.stdout
