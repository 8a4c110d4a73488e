"""Pea-KD: shuffled parameter sharing against hand-built forward passes; PTP labels by hand."""

import copy
import json

import pytest
import torch
from conftest import tiny_recipe
from test_extract import _inputs
from transformers import AutoConfig, AutoModelForSequenceClassification

from bequest.config import load_config
from bequest.errors import BequestError
from bequest.init.sps import draw_swaps, share_layers, unroll
from bequest.models.arch import for_layer
from bequest.models.loading import count_parameters, layer_list
from bequest.objectives.ptp import ptp_labels, ptp_thresholds
from bequest.pipeline import run_recipe

ARCHITECTURES = ["bert", "distilbert", "mpnet"]


def _student(model_type, layers=2):
    torch.manual_seed(0)
    shape = dict(hidden_size=24, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=40,
                 max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    if model_type == "distilbert":
        shape.update(hidden_dim=shape.pop("intermediate_size"), dropout=0.0, attention_dropout=0.0,
                     n_layers=shape["num_hidden_layers"])
    config = AutoConfig.for_model(model_type, vocab_size=100, num_labels=3, **shape)
    return AutoModelForSequenceClassification.from_config(config).eval()


def _by_hand(student, swapped_first: set[int], swapped_second: set[int]):
    """A plain 2N-layer model built from the student's state dict alone: layer N+i a copy of layer i,
    Query and Key exchanged in the passes listed."""
    depth = student.config.num_hidden_layers
    config = copy.deepcopy(student.config)
    config.num_hidden_layers = 2 * depth
    plain = type(student)(config).eval()
    prefix, layers = layer_list(student)
    query, key = for_layer(layers[0]).query, for_layer(layers[0]).key
    state = student.state_dict()
    for name, tensor in list(state.items()):
        if name.startswith(prefix + "."):
            index, rest = name[len(prefix) + 1:].split(".", 1)
            state[f"{prefix}.{int(index) + depth}.{rest}"] = tensor
    for position in range(2 * depth):
        if position % depth in (swapped_first if position < depth else swapped_second):
            for kind in ("weight", "bias"):
                q, k = f"{prefix}.{position}.{query}.{kind}", f"{prefix}.{position}.{key}.{kind}"
                state[q], state[k] = state[k], state[q]
    plain.load_state_dict(state)
    return plain


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_paper_sps_runs_the_layers_again_with_query_and_key_exchanged(model_type):
    student = _student(model_type)
    shared = share_layers(student, "paper").eval()
    assert count_parameters(shared) == count_parameters(student)  # N layers of parameters
    assert shared.config.num_hidden_layers == 4
    expected = _by_hand(student, swapped_first=set(), swapped_second={0, 1})
    with torch.no_grad():
        torch.testing.assert_close(shared(**_inputs()).logits, expected(**_inputs()).logits, atol=1e-6, rtol=1e-6)
        plain = unroll(shared).eval()
        assert torch.equal(plain(**_inputs()).logits, shared(**_inputs()).logits)
    assert count_parameters(plain) > count_parameters(shared)


def test_a_shared_parameter_gets_the_gradient_of_both_its_uses():
    student = _student("bert")
    shared = share_layers(student, "paper")
    plain = unroll(shared)
    for model in (shared, plain):
        model(**_inputs()).logits.square().sum().backward()
    layer = plain.bert.encoder.layer
    expected = layer[0].attention.self.query.weight.grad + layer[2].attention.self.key.weight.grad
    torch.testing.assert_close(shared.bert.encoder.layer[0].attention.self.query.weight.grad, expected)
    assert shared.bert.encoder.layer[2].attention.self.key.weight is shared.bert.encoder.layer[0].attention.self.query.weight


def test_stochastic_sps_swaps_only_at_odd_training_steps_and_never_in_evaluation():
    student = _student("bert", layers=3)
    shared = share_layers(student, "stochastic").train()  # no dropout in this config
    with torch.no_grad():
        draw_swaps(shared)  # what the training loop's callback does before each optimiser step
        even = shared(**_inputs()).logits  # step 0: no swap
        torch.manual_seed(11)
        draw_swaps(shared)
        odd = shared(**_inputs()).logits  # step 1: each layer swapped with probability 1/2, in both passes
        torch.manual_seed(11)
        flags = {i for i, swap in enumerate((torch.rand(3) < 0.5).tolist()) if swap}
        assert flags and len(flags) < 3  # this seed swaps some layers, not all
        # training-mode kernels differ from evaluation ones in the last bits; a wrong swap changes logits by ~0.1
        torch.testing.assert_close(even, _by_hand(student, set(), set())(**_inputs()).logits, atol=1e-5, rtol=0)
        torch.testing.assert_close(odd, _by_hand(student, flags, flags)(**_inputs()).logits, atol=1e-5, rtol=0)
        shared.eval()
        torch.testing.assert_close(shared(**_inputs()).logits, even, atol=1e-5, rtol=0)
        assert torch.equal(unroll(shared).eval()(**_inputs()).logits, shared(**_inputs()).logits)


def test_ptp_labels_match_a_hand_computation():
    logits = torch.log(torch.tensor([[0.99, 0.01], [0.6, 0.4], [0.1, 0.9], [0.3, 0.7], [0.97, 0.03]]))
    labels = torch.tensor([0, 0, 0, 0, 1])
    # right+confident, right+unsure, wrong+confident, wrong+unsure, wrong+confident (t1 .95, t2 .8)
    assert ptp_labels(logits, labels, 0.95, 0.8).tolist() == [0, 1, 2, 3, 2]
    t1, t2 = ptp_thresholds(logits, labels)
    assert t1 == pytest.approx(0.6) and t2 == pytest.approx(0.9)  # lower medians of (.99, .6) and (.9, .7, .97)


PTP_THEN_KD = {"name": "peakd", "layers": 2, "init": "lower", "sps": {"mode": "paper"}, "stages": [
    {"name": "ptp", "objectives": {"ptp": {}}, "train": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3}},
    {"name": "kd", "objectives": {"kd": {}, "pkd": {}}, "train": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3}}]}


def test_ptp_then_pkd_with_sps_runs_and_exports_an_ordinary_model(tmp_path, tiny_teacher, tiny_glue):
    results = run_recipe(load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, students=[PTP_THEN_KD])))
    row = results["students"]["peakd"]
    assert row["num_layers"] == 4 and row["sps_trained_parameters"] < row["parameters"]
    history = json.loads((tmp_path / "run" / "logs" / "peakd.json").read_text())
    assert [h["stage"] for h in history] == [1, 2]
    folder = tmp_path / "run" / "peakd"
    assert AutoConfig.from_pretrained(folder).num_hidden_layers == 4
    card = (folder / "README.md").read_text()
    assert f"{row['sps_trained_parameters']:,} parameters" in card and "run twice" in card


def test_the_ptp_stage_trains_the_encoder_and_hands_its_weights_to_the_kd_stage(tmp_path, tiny_teacher, tiny_glue, monkeypatch):
    import bequest.distil as pipeline

    stages, real = [], pipeline.train

    def spy(distiller, *args, **kwargs):
        before = {k: v.clone() for k, v in distiller.student.state_dict().items()}
        log = real(distiller, *args, **kwargs)
        stages.append((set(distiller.terms), before, {k: v.clone() for k, v in distiller.student.state_dict().items()}))
        return log

    monkeypatch.setattr(pipeline, "train", spy)  # the distillation stages; the teacher trains through its own import
    run_recipe(load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, students=[PTP_THEN_KD])))
    (ptp_terms, ptp_start, ptp_end), (kd_terms, kd_start, _) = stages
    assert ptp_terms == {"ptp"} and kd_terms == {"kd", "pkd"}
    trained = [k for k in ptp_start if not torch.equal(ptp_start[k], ptp_end[k])]
    assert any(".layer.0.attention.self.query" in k for k in trained) and not any("classifier" in k for k in trained)
    assert ptp_end.keys() == kd_start.keys() and all(torch.equal(ptp_end[k], kd_start[k]) for k in ptp_end)


def test_ptp_is_refused_for_regression_and_on_a_corpus(tmp_path, tiny_teacher, tiny_glue):
    student = {"name": "s", "layers": 2, "objectives": {"ptp": {}}}
    with pytest.raises(BequestError, match="regression"):
        run_recipe(load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="stsb", students=[student])))
    with pytest.raises(BequestError, match="ptp needs a task"):
        load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task=None, students=[student],
                                corpus={"files": [str(tmp_path)]}))
