"""Multi-process training: a recipe under `accelerate launch` with 2 CPU processes (DDP over gloo)
gives the model a single process gives with the same global batch, and only one process writes."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from accelerate import Accelerator
from conftest import tiny_recipe, write_tiny_encoder
from safetensors.torch import load_file

import bequest.train.loop as loop
from bequest.config import TrainConfig
from bequest.data.features import Encoded
from bequest.train.loop import _global_batches, process_share

# per-example-mean losses only: a token-averaged one (hidden states) is averaged per process
STUDENTS = [
    {"name": "kd-pkd", "layers": 2, "init": "lower", "objectives": {"kd": {}, "pkd": {"weight": 10}},
     "train": {"epochs": 2, "batch_size": 16, "learning_rate": 1e-3, "checkpoint_every": 3}},
    {"name": "sps", "layers": 2, "init": "upper", "sps": {"mode": "paper"}, "objectives": {"kd": {}},
     "train": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3}},
    {"name": "wid", "layers": 2, "init": "lower", "wid": {"hidden_size": 16, "w_step": 1}, "objectives": {"kd": {}},
     "train": {"epochs": 2, "batch_size": 16, "learning_rate": 1e-4}},
]


def test_process_shares_partition_each_batch_and_weigh_to_its_mean():
    batch = list(range(10, 15))  # 5 examples over 2 processes: 3 and 2
    shares = [process_share(batch, rank, 2) for rank in range(2)]
    assert sorted(i for mine, _ in shares for i in mine) == batch
    losses = {i: float(i) ** 2 for i in batch}  # any per-example losses
    averaged = sum(weight * sum(losses[i] for i in mine) / len(mine) for mine, weight in shares) / 2  # what DDP computes
    assert averaged == pytest.approx(sum(losses.values()) / len(batch))
    assert process_share(batch, 0, 1) == (batch, 1.0)


def test_a_batch_too_small_to_share_is_skipped():
    data = Encoded({"input_ids": [[1] * 5] * 33}, [0] * 33)  # batches of 16, 16 and 1
    cfg = TrainConfig(batch_size=16, group_by_length=False)
    assert [len(b) for b in _global_batches(data, cfg, 0, 0, 1)] == [16, 16, 1]
    assert [len(b) for b in _global_batches(data, cfg, 0, 0, 2)] == [16, 16]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(command: list[str], folder) -> None:
    # CPU processes over gloo even where there is a GPU (two processes cannot share one over NCCL)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_processes_train_the_same_models_as_one(tmp_path, tiny_glue):
    teacher = write_tiny_encoder(tmp_path / "teacher", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    runs = {}
    for name, launcher in [
        ("single", [sys.executable, "-m", "bequest"]),
        ("ddp", [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                 "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()), "-m", "bequest"]),
    ]:
        folder = tmp_path / name
        folder.mkdir()
        # 149 examples: batches of 16 and a last one of 5, shared 3 / 2; each run fine-tunes its own teacher
        recipe = tiny_recipe(folder, teacher, tiny_glue, students=STUDENTS, runtime={"precision": "fp32"},
                             data={"dir": str(tiny_glue), "max_length": 32, "max_train_examples": 149})
        _run([*launcher, "run", str(recipe)], folder)
        runs[name] = folder

    results = {name: json.loads((folder / "run" / "results.json").read_text()) for name, folder in runs.items()}
    teachers = {name: load_file(next((folder / "cache" / "teachers").glob("*/model.safetensors"))) for name, folder in runs.items()}
    for key, value in teachers["single"].items():
        torch.testing.assert_close(teachers["ddp"][key], value, atol=1e-5, rtol=1e-4)
    for student in ("kd-pkd", "sps", "wid"):
        single, ddp = (load_file(runs[name] / "run" / student / "model.safetensors") for name in runs)
        assert single.keys() == ddp.keys()
        for key, value in single.items():  # rounding differs; Adam magnifies it in near-zero gradients (20 steps of lr 1e-3)
            torch.testing.assert_close(ddp[key], value, atol=1e-4, rtol=1e-4, msg=f"{student}: {key}")
        # the same model: the same dev predictions, and the same step count and curve
        assert results["ddp"]["students"][student]["dev"] == pytest.approx(results["single"]["students"][student]["dev"], abs=1e-6)
        histories = [json.loads((runs[name] / "run" / "logs" / f"{student}.json").read_text()) for name in runs]
        assert [h["step"] for h in histories[0]] == [h["step"] for h in histories[1]]
        assert [h["train_loss"] for h in histories[1]] == pytest.approx([h["train_loss"] for h in histories[0]], rel=1e-4)
    # one writer: each WID mask update is logged once, and no checkpoint or temporary file is left behind
    masks = [(runs[name] / "run" / "logs" / "wid.wid_masks.jsonl").read_text().splitlines() for name in runs]
    assert len(masks[1]) == len(masks[0]) == 16
    leftovers = [p.name for p in (runs["ddp"] / "run").rglob("*") if p.name.endswith(".tmp") or p.name == "checkpoints"]
    assert leftovers == []


class _OneOfTwo(Accelerator):
    """A single-process accelerator that tells the loop it is process `rank` of 2."""

    num_processes = 2

    def __init__(self, rank: int):
        super().__init__(cpu=True)
        self.rank = rank

    @property
    def process_index(self) -> int:
        return self.rank


def test_each_process_trains_on_its_share_only(tmp_path):
    from test_training import _data, _model

    data, cfg = _data(), TrainConfig(epochs=1, batch_size=8, learning_rate=1e-3)
    seen = {}
    for rank in (0, 1):
        def loss_fn(model, batch, rank=rank):
            seen.setdefault(rank, []).append(batch["index"].tolist())
            return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float().pow(2).mean()

        loop.train(_model(), data, loss_fn, cfg, seed=11, pad_token_id=0, accelerator=_OneOfTwo(rank),
                   checkpoint_dir=tmp_path / str(rank))
    expected = _global_batches(data, cfg, 11, 0, 2)  # 70 examples: 8 batches of 8 and one of 6
    assert [sorted(a + b) for a, b in zip(seen[0], seen[1])] == [sorted(batch) for batch in expected]
    assert [len(a) for a in seen[0]] == [len(batch) // 2 for batch in expected]
