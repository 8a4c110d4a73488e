"""Transfer sets (data.transfer): unlabelled texts a student learns from the teacher's outputs only."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_recipe
from test_kd_loss import _softmax

from bequest.data.features import encode
from bequest.data.transfer import WithTransfer
from bequest.kinds import CLASSIFICATION, REGRESSION


def _reference(student, teacher, labels, labelled, alpha, t):
    """KL over every example, cross-entropy over the labelled ones only."""
    p_t, p_s = _softmax(teacher / t), _softmax(student / t)
    kl = (p_t * (np.log(p_t) - np.log(p_s))).sum(axis=-1).mean() * t * t
    rows = np.flatnonzero(labelled)
    ce = -np.log(_softmax(student[rows])[np.arange(len(rows)), labels[rows]]).mean() if len(rows) else 0.0
    return (1 - alpha) * ce + alpha * kl


@pytest.mark.parametrize("labelled", [[1, 0, 1, 1, 0, 0, 1, 0], [1] * 8, [0] * 8, [0, 0, 0, 0, 0, 0, 0, 1]])
def test_kd_loss_reads_labels_only_where_examples_have_them(labelled):
    generator = torch.Generator().manual_seed(1)
    student = torch.randn(8, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(8, 3, generator=generator, dtype=torch.float64) * 3
    labels = torch.randint(0, 3, (8,), generator=generator)
    mask = torch.tensor(labelled, dtype=torch.bool)
    got = CLASSIFICATION.kd_loss(student, teacher, labels, 0.3, 2.0, labelled=mask)
    expected = _reference(student.detach().numpy(), teacher.numpy(), labels.numpy(), np.array(labelled), 0.3, 2.0)
    assert got.item() == pytest.approx(expected, rel=1e-10)
    got.backward()  # in the graph even when no example is labelled
    assert student.grad is not None and torch.isfinite(student.grad).all()


def test_a_placeholder_label_never_moves_the_regression_loss():
    student, teacher = torch.tensor([[1.0], [2.0]]), torch.tensor([[1.5], [1.0]])
    labelled = torch.tensor([True, False])
    first = REGRESSION.kd_loss(student, teacher, torch.tensor([0.0, 4.0]), 0.5, 2.0, labelled=labelled)
    second = REGRESSION.kd_loss(student, teacher, torch.tensor([0.0, -100.0]), 0.5, 2.0, labelled=labelled)
    assert first.item() == second.item() == pytest.approx(0.5 * 1.0 + 0.5 * (0.25 + 1.0) / 2)


@pytest.fixture(scope="module")
def tokenizer(tiny_teacher):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_teacher)


def _joined(tokenizer):
    labelled = encode(tokenizer, ["a fine film", "dull", "a long and winding story"], None, [1, 0, 1], 32)
    transfer = encode(tokenizer, ["bright", "not good at all", "so so"], None, [1, 1, 1], 32)
    return labelled, transfer, WithTransfer(labelled, transfer)


def test_a_batch_says_which_examples_are_labelled_in_the_order_asked(tokenizer):
    labelled, transfer, joined = _joined(tokenizer)
    assert len(joined) == 6 and joined.lengths == labelled.lengths + transfer.lengths
    batch = joined.batch([4, 0, 5, 2], tokenizer.pad_token_id)
    assert batch["labelled"].tolist() == [False, True, False, True]
    assert batch["index"].tolist() == [4, 0, 5, 2]
    expected = [transfer.rows([1])["input_ids"][0], labelled.rows([0])["input_ids"][0],
                transfer.rows([2])["input_ids"][0], labelled.rows([2])["input_ids"][0]]
    for row, ids in zip(batch["input_ids"].tolist(), expected):
        assert row[: len(ids)] == ids and set(row[len(ids):]) <= {tokenizer.pad_token_id}


def test_select_keeps_each_row_in_its_part_and_the_fingerprint_tells_the_parts_apart(tokenizer):
    labelled, transfer, joined = _joined(tokenizer)
    chosen = joined.select([1, 3, 5])
    assert len(chosen.labelled) == 1 and len(chosen.transfer) == 2
    assert chosen.batch([0, 1, 2], tokenizer.pad_token_id)["labelled"].tolist() == [True, False, False]
    swapped = WithTransfer(transfer, labelled)  # the same rows, the other part labelled
    assert joined.fingerprint() != swapped.fingerprint() != labelled.fingerprint()
    assert joined.fingerprint() == WithTransfer(*_joined(tokenizer)[:2]).fingerprint()


def _transfer_file(tmp_path, shared_data, rows: int):
    """SST-2 training sentences the tiny glue folder (its first 160 rows) does not hold."""
    lines = (shared_data / "glue" / "SST-2" / "train.tsv").read_text(encoding="utf-8").splitlines()[161:161 + rows]
    path = tmp_path / "unlabelled.txt"
    path.write_text("\n".join(line.split("\t")[0] for line in lines) + "\n", encoding="utf-8")
    return path


def test_a_run_with_transfer_and_augment_trains_students_on_both_and_the_teacher_on_neither(
        tmp_path, tiny_teacher, tiny_glue, shared_data, cli):
    """Also the baseline and min_steps end to end: the plain run fine-tunes the teacher for 25 steps
    (3 epochs of 10) and scores the majority class; the other run, sharing its cache, reuses that teacher."""
    texts = _transfer_file(tmp_path, shared_data, 400)
    data = {"dir": str(tiny_glue), "max_length": 32}
    extra = {"transfer": str(texts), "transfer_ratio": 2.0, "augment": {"method": "neighbours", "copies": 2}}
    runs, results = {}, {}
    for name, more in (("plain", {}), ("transfer", extra)):
        folder = tmp_path / name
        folder.mkdir()
        recipe = tiny_recipe(folder, tiny_teacher, tiny_glue, data={**data, **more}, cache_dir=str(tmp_path / "cache"))
        raw = yaml.safe_load(recipe.read_text())
        raw["teacher"]["finetune"]["min_steps"] = 25
        recipe.write_text(yaml.safe_dump(raw))
        result = cli.run(["run", str(recipe)], folder)
        assert result.returncode == 0, result.stderr
        runs[name], results[name] = folder / "run", json.loads((folder / "run" / "results.json").read_text())
        if name == "plain":
            check_baseline_and_min_steps(result, results[name], runs[name], tiny_glue)
    environment = {name: json.loads((run / "environment.json").read_text()) for name, run in runs.items()}
    assert environment["plain"]["transfer_examples"] == 0
    assert environment["transfer"]["transfer_examples"] == 320 + 320  # 2 x the 160 labelled rows, of 400; 2 copies
    assert str(texts) in environment["transfer"]["data_files"]
    teachers = [results[name]["teacher"] for name in ("plain", "transfer")]
    assert teachers[0]["path"] == teachers[1]["path"] and teachers[0]["dev"] == teachers[1]["dev"]  # one cache key
    from safetensors.torch import load_file

    weights = {name: load_file(run / "student" / "model.safetensors") for name, run in runs.items()}
    assert any(not torch.equal(weights["plain"][key], weights["transfer"][key]) for key in weights["plain"])


def check_baseline_and_min_steps(result, results: dict, run: Path, glue: Path) -> None:
    labels = {}
    for split in ("train", "dev"):
        with open(glue / "SST-2" / f"{split}.tsv", encoding="utf-8") as fh:
            labels[split] = [int(row["label"]) for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)]
    majority = max((0, 1), key=labels["train"].count)
    expected = labels["dev"].count(majority) / len(labels["dev"])
    assert results["baselines"]["majority class"]["dev"]["accuracy"] == pytest.approx(expected)
    assert "(majority" in result.stdout  # a row of the printed table (rich may wrap its name)
    history = json.loads((run / "logs" / "teacher.json").read_text())
    assert [entry["epoch"] for entry in history] == [1, 2, 3] and history[-1]["step"] == 30  # 10 steps an epoch
    gap = results["teacher"]["dev"]["accuracy"] - expected
    assert bool(results["warnings"]) is (gap < 0.02)
    assert all(line in result.stderr for line in results["warnings"])
