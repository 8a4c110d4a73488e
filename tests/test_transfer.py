"""Transfer sets (data.transfer): unlabelled texts a student learns from the teacher's outputs only."""

import json

import numpy as np
import pytest
import torch
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


def test_a_run_with_a_transfer_file_trains_students_on_it_and_the_teacher_without_it(
        tmp_path, tiny_teacher, tiny_glue, shared_data, cli):
    texts = _transfer_file(tmp_path, shared_data, 400)
    data = {"dir": str(tiny_glue), "max_length": 32}
    runs = {}
    for name, extra in (("plain", {}), ("transfer", {"transfer": str(texts), "transfer_ratio": 2.0})):
        folder = tmp_path / name
        folder.mkdir()
        result = cli.run(["run", str(tiny_recipe(folder, tiny_teacher, tiny_glue, data={**data, **extra}))], folder)
        assert result.returncode == 0, result.stderr
        runs[name] = folder / "run"
    environment = {name: json.loads((run / "environment.json").read_text()) for name, run in runs.items()}
    assert environment["plain"]["transfer_examples"] == 0
    assert environment["transfer"]["transfer_examples"] == 320  # 2 x the 160 labelled rows, of 400
    assert str(texts) in environment["transfer"]["data_files"]
    results = {name: json.loads((run / "results.json").read_text()) for name, run in runs.items()}
    assert results["transfer"]["teacher"]["dev"] == results["plain"]["teacher"]["dev"]
    from safetensors.torch import load_file

    weights = {name: load_file(run / "student" / "model.safetensors") for name, run in runs.items()}
    assert any(not torch.equal(weights["plain"][key], weights["transfer"][key]) for key in weights["plain"])
