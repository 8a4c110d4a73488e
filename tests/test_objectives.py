"""Intermediate objectives: values against independent loops, zero at the teacher, gradients, TextBrewer."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY
from transformers import AutoConfig, AutoModelForSequenceClassification

from bequest.config import ObjectivesConfig
from bequest.errors import BequestError
from bequest.kinds import CLASSIFICATION
from bequest.models.capture import run_captured
from bequest.objectives import losses
from bequest.objectives.mapping import layer_pairs
from bequest.objectives.terms import build_terms
from bequest.train.distiller import Distiller

B, H, T, D = 3, 2, 5, 8


@pytest.fixture
def tensors():
    g = torch.Generator().manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
    return {
        "mask": mask,
        "hs": torch.randn(B, T, D, generator=g, dtype=torch.float64),
        "ht": torch.randn(B, T, D, generator=g, dtype=torch.float64),
        "ss": torch.randn(B, H, T, T, generator=g, dtype=torch.float64),
        "st": torch.randn(B, H, T, T, generator=g, dtype=torch.float64),
    }


def real(mask):
    return [(b, i) for b in range(mask.shape[0]) for i in range(mask.shape[1]) if mask[b, i]]


def test_hidden_mse_against_a_loop(tensors):
    m, hs, ht = tensors["mask"], tensors["hs"], tensors["ht"]
    expected = sum(((hs[b, i] - ht[b, i]) ** 2).sum().item() for b, i in real(m)) / (len(real(m)) * D)
    assert losses.hidden_mse(hs, ht, m).item() == pytest.approx(expected, rel=1e-12)
    assert losses.hidden_mse(ht, ht, m).item() == 0
    # padded positions do not matter
    moved = hs.clone()
    moved[2, 3:] += 100
    assert losses.hidden_mse(moved, ht, m).item() == pytest.approx(expected, rel=1e-12)


def test_hidden_cosine_against_a_loop(tensors):
    m, hs, ht = tensors["mask"], tensors["hs"], tensors["ht"]
    cos = [torch.dot(hs[b, i], ht[b, i]) / (hs[b, i].norm() * ht[b, i].norm()) for b, i in real(m)]
    assert losses.hidden_cosine(hs, ht, m).item() == pytest.approx(sum(1 - c.item() for c in cos) / len(cos), rel=1e-10)
    assert losses.hidden_cosine(2 * ht, ht, m).item() == pytest.approx(0, abs=1e-12)  # only direction counts


def test_attention_mse_against_a_loop(tensors):
    m, ss, st = tensors["mask"], tensors["ss"], tensors["st"]
    total, count = 0.0, 0
    for b in range(B):
        n = int(m[b].sum())
        for h in range(H):
            total += ((ss[b, h, :n, :n] - st[b, h, :n, :n]) ** 2).sum().item()
            count += n * n
    assert losses.attention_mse(ss, st, m).item() == pytest.approx(total / count, rel=1e-12)
    assert losses.attention_mse(st, st, m).item() == 0


def _masked_log_softmax(scores, mask):
    return F.log_softmax(scores + (1 - mask[:, None, None, :].double()) * torch.finfo(torch.float64).min, -1)


def test_distribution_kl_against_a_loop(tensors):
    m = tensors["mask"]
    ls, lt = _masked_log_softmax(tensors["ss"], m), _masked_log_softmax(tensors["st"], m)
    total, rows = 0.0, 0
    for b in range(B):
        n = int(m[b].sum())
        for h in range(H):
            for i in range(n):
                p = torch.softmax(tensors["st"][b, h, i, :n], -1)
                q = torch.softmax(tensors["ss"][b, h, i, :n], -1)
                total += (p * (p.log() - q.log())).sum().item()
                rows += 1
    assert losses.distribution_kl(ls, lt, m).item() == pytest.approx(total / rows, rel=1e-10)
    assert losses.distribution_kl(lt, lt, m).item() == pytest.approx(0, abs=1e-12)


def test_relation_log_probs_against_explicit_heads(tensors):
    m, x = tensors["mask"], tensors["hs"]  # width 8 in 4 relation heads of 2
    got = losses.relation_log_probs(x, 4, m)
    for b in range(B):
        n = int(m[b].sum())
        for a in range(4):
            part = x[b, :n, 2 * a : 2 * a + 2]
            expected = F.log_softmax(part @ part.T / math.sqrt(2), -1)
            assert torch.allclose(got[b, a, :n, :n], expected)


def test_pkd_against_the_formula():
    s = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    t = torch.tensor([[0.0, 2.0], [0.0, 5.0]])
    expected = ((0.6 - 0) ** 2 + (0.8 - 1) ** 2 + (1 - 0) ** 2 + (0 - 1) ** 2) / 2
    assert losses.pkd(s, t).item() == pytest.approx(expected)


@pytest.mark.parametrize("loss", ["hidden_mse", "attention_mse", "kl"])
def test_gradients_match_finite_differences(tensors, loss):
    m = tensors["mask"]
    if loss == "hidden_mse":
        fn, x = (lambda a: losses.hidden_mse(a, tensors["ht"], m)), tensors["hs"]
    elif loss == "attention_mse":
        fn, x = (lambda a: losses.attention_mse(a, tensors["st"], m)), tensors["ss"]
    else:
        lt = _masked_log_softmax(tensors["st"], m)
        fn, x = (lambda a: losses.distribution_kl(_masked_log_softmax(a, m), lt, m)), tensors["ss"]
    assert torch.autograd.gradcheck(fn, (x.clone().requires_grad_(),))


def test_hidden_mse_gradient_is_zero_on_padding(tensors):
    hs = tensors["hs"].clone().requires_grad_()
    losses.hidden_mse(hs, tensors["ht"], tensors["mask"]).backward()
    assert hs.grad[1, 3:].abs().sum() == 0 and hs.grad[0].abs().sum() > 0


# ---------------------------------------------------------------- TextBrewer agreement


def test_agrees_with_textbrewer(tensors):
    tb = pytest.importorskip("textbrewer.losses")
    m, hs, ht, ss, st = (tensors[k] for k in ("mask", "hs", "ht", "ss", "st"))
    assert losses.hidden_mse(hs, ht, m).item() == pytest.approx(tb.hid_mse_loss(hs, ht, m).item(), rel=1e-12)
    assert losses.attention_mse(ss, st, m).item() == pytest.approx(tb.att_mse_loss(ss, st, m).item(), rel=1e-12)
    # TextBrewer's attention loss is a cross-entropy; KL = CE(teacher, student) - CE(teacher, teacher)
    masked_s = ss + (1 - m[:, None, None, :].double()) * -1e9
    masked_t = st + (1 - m[:, None, None, :].double()) * -1e9
    tb_kl = tb.att_ce_loss(masked_s, masked_t, m) - tb.att_ce_loss(masked_t, masked_t, m)
    ours = losses.distribution_kl(_masked_log_softmax(ss, m), _masked_log_softmax(st, m), m)
    assert ours.item() == pytest.approx(tb_kl.item(), rel=1e-9)
    assert losses.pkd(hs[:, 0], ht[:, 0]).item() == pytest.approx(tb.pkd_loss(hs, ht).item(), rel=1e-12)
    # logit KD: TextBrewer's kd_ce_loss is CE(p_t, p_s) at temperature T; ours is KL * T^2
    zs, zt = hs[:, 0, :4], ht[:, 0, :4]
    entropy = tb.kd_ce_loss(zt, zt, 2.0)
    assert (CLASSIFICATION.soft_loss(zs, zt, 2.0) / 4).item() == pytest.approx((tb.kd_ce_loss(zs, zt, 2.0) - entropy).item(), rel=1e-10)


# ---------------------------------------------------------------- mappings and validation


def test_layer_mappings():
    assert layer_pairs("uniform", 3, 6, "hidden") == [(0, 0), (1, 2), (2, 4), (3, 6)]
    assert layer_pairs("skip", 3, 6, "layer") == [(0, 1), (1, 3), (2, 5)]  # teacher i*k + k - 1
    assert layer_pairs("uniform", 4, 12, "layer") == [(0, 2), (1, 5), (2, 8), (3, 11)]
    assert layer_pairs("last", 3, 6, "hidden") == [(3, 6)] and layer_pairs("last", 3, 6, "layer") == [(2, 5)]
    assert layer_pairs([(1, 4)], 3, 6, "layer") == [(1, 4)]


@pytest.mark.parametrize(
    ("pair", "space", "message"),
    [((3, 1), "layer", "student layer 3, but the student has layers 0..2"),
     ((1, 6), "layer", "teacher layer 6, but the teacher has layers 0..5"),
     ((4, 1), "hidden", "student hidden state 4")],
)
def test_mappings_to_missing_layers_are_refused(pair, space, message):
    with pytest.raises(BequestError, match=message):
        layer_pairs([pair], 3, 6, space)


def _config(**extra):
    return AutoConfig.for_model("bert", vocab_size=100, num_labels=2, **{**TINY, **extra})


@pytest.mark.parametrize(
    ("objectives", "student", "message"),
    [({"attention_kl": {"mapping": [[0, 9]]}}, {}, "teacher layer 9"),
     ({"hidden": {"mapping": [[5, 1]]}}, {}, "student hidden state 5"),
     ({"attention_mse": {}}, {"num_attention_heads": 4}, "4 heads and the teacher 2"),
     ({"minilmv2": {"relation_heads": 5}}, {}, "5 relation heads do not divide"),
     ({"pkd": {}}, {"num_hidden_layers": 1}, "no intermediate layer")],
)
def test_impossible_objectives_are_refused_before_training(objectives, student, message):
    with pytest.raises(BequestError, match=message):
        build_terms(ObjectivesConfig.model_validate(objectives), _config(**{"num_hidden_layers": 2, **student}), _config())


# ---------------------------------------------------------------- terms on real models


def _pair(student_width=32, student_heads=2):
    torch.manual_seed(0)
    teacher = AutoModelForSequenceClassification.from_config(_config()).eval()
    student = AutoModelForSequenceClassification.from_config(
        _config(num_hidden_layers=2, hidden_size=student_width, num_attention_heads=student_heads, intermediate_size=48))
    return student, teacher


ALL = {"hidden": {}, "attention_mse": {}, "attention_kl": {}, "value_relation": {}, "minilmv2": {"relation_heads": 4},
       "pkd": {}, "task": {}}


def _batch():
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    return {"input_ids": torch.randint(5, 100, (2, 7)) * mask, "attention_mask": mask, "labels": torch.tensor([0, 1]),
            "index": torch.tensor([0, 1])}


@pytest.mark.parametrize("name", list(ALL))
def test_each_term_is_zero_for_a_student_equal_to_its_teacher(name):
    _, teacher = _pair()
    terms = build_terms(ObjectivesConfig.model_validate({name: ALL[name]}), teacher.config, teacher.config)
    distiller = Distiller(teacher, terms, teacher, soft_targets=None).eval()
    value = distiller(_batch()).item()
    if name == "task":
        assert value > 0
    else:
        assert value == pytest.approx(0, abs=1e-6)


def test_all_terms_train_a_narrower_student_through_projections():
    student, teacher = _pair(student_width=16, student_heads=2)
    objectives = {k: v for k, v in ALL.items() if k not in ("value_relation",)}
    objectives["value_relation"] = {}  # same head count (2), different head size: relations still compare
    terms = build_terms(ObjectivesConfig.model_validate(objectives), student.config, teacher.config)
    assert len(terms["hidden"][1].projections) == 1 and terms["hidden"][1].pairs == [(0, 0), (1, 2), (2, 4)]
    distiller = Distiller(student, terms, teacher, soft_targets=None)
    loss = distiller(_batch())
    loss.backward()
    assert distiller.terms["hidden"].projections[0].weight.grad.abs().sum() > 0
    assert student.bert.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    names = {n for n, _ in distiller.named_parameters()}
    assert not any(n.startswith("_teacher") for n in names) and any(n.startswith("terms.hidden") for n in names)


def test_per_layer_projection_makes_one_map_per_pair():
    student, teacher = _pair(student_width=16)
    terms = build_terms(ObjectivesConfig.model_validate({"hidden": {"projection": "per_layer"}}), student.config, teacher.config)
    assert len(terms["hidden"][1].projections) == 3


def test_minilmv2_matches_a_hand_built_relation_loss():
    student, teacher = _pair(student_width=16, student_heads=1)  # head counts differ: only relations compare
    student, teacher = student.double(), teacher.double()  # near-equal distributions: keep cancellation out
    batch = _batch()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    terms = build_terms(ObjectivesConfig.model_validate({"minilmv2": {"relation_heads": 4, "relations": ["qq", "vv"]}}),
                        student.config, teacher.config)
    got = Distiller(student, terms, teacher, None).eval()(batch)
    s = run_captured(student.eval(), inputs, hidden=False, attention=True)
    t = run_captured(teacher, inputs, hidden=False, attention=True)
    mask = batch["attention_mask"]
    expected = 0.0
    for slot in ("queries", "values"):
        xs, xt = getattr(s, slot)[1], getattr(t, slot)[3]  # student's last layer <- teacher's last layer
        for b in range(2):
            n = int(mask[b].sum())
            for a in range(4):
                ps = xs[b, :n].view(n, 4, -1)[:, a]
                pt = xt[b, :n].view(n, 4, -1)[:, a]
                log_s = F.log_softmax(ps @ ps.T / math.sqrt(ps.shape[-1]), -1)
                log_t = F.log_softmax(pt @ pt.T / math.sqrt(pt.shape[-1]), -1)
                expected += (log_t.exp() * (log_t - log_s)).sum().item() / (4 * int(mask.sum()))
    assert got.item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("model_type", ["bert", "roberta", "mpnet", "electra", "distilbert"])
def test_captured_attention_is_the_models_own(model_type):
    """Scores rebuilt from hooked Q/K (+ MPNet's position bias) give exactly the model's attention maps."""
    torch.manual_seed(0)
    if model_type == "distilbert":
        config = AutoConfig.for_model(model_type, vocab_size=100, dim=32, n_layers=3, n_heads=4, hidden_dim=64)
    else:
        config = AutoConfig.for_model(model_type, vocab_size=100, **{**TINY, "num_hidden_layers": 3, "num_attention_heads": 4})
    config._attn_implementation = "eager"
    model = AutoModelForSequenceClassification.from_config(config).eval()
    batch = _batch()
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    captured = run_captured(model, inputs, hidden=True, attention=True)
    reference = model(**inputs, output_attentions=True, output_hidden_states=True)
    assert len(captured.hidden) == 4 and torch.equal(captured.hidden[-1], reference.hidden_states[-1])
    for layer in range(3):
        assert torch.allclose(torch.softmax(captured.scores(layer), -1), reference.attentions[layer], atol=1e-6)


# ---------------------------------------------------------------- MLM


def _mlm_term(student_config):
    from bequest.objectives.mlm import MLM, mlm_head

    head, decoder, _ = mlm_head(student_config, student_config, None)
    return MLM(head, decoder, 0.3, mask_id=3, special_ids=[0, 1, 2, 3])


def test_mlm_masks_only_real_ordinary_tokens_bert_style():
    term = _mlm_term(_config())
    torch.manual_seed(0)
    ids = torch.randint(4, 100, (64, 40))
    ids[:, 0], ids[:, -1] = 1, 2  # [CLS] ... [SEP]
    mask = torch.ones_like(ids)
    mask[:, 29:] = 0  # positions 29.. are padding
    masked, labels = term.mask(ids, mask)
    chosen = labels != -100
    assert torch.equal(labels[chosen], ids[chosen]) and not chosen[:, 0].any() and not chosen[:, 29:].any()
    assert 0.25 < chosen[:, 1:29].float().mean().item() < 0.35
    replaced = masked[chosen]
    assert 0.75 < (replaced == 3).float().mean().item() < 0.85  # 80% [MASK]
    assert 0.05 < (replaced == ids[chosen]).float().mean().item() < 0.16  # 10% kept (+ random draws of the same id)
    assert torch.equal(masked[~chosen], ids[~chosen])


def test_mlm_loss_is_cross_entropy_against_tied_embeddings():
    student, _ = _pair()
    terms = build_terms(ObjectivesConfig.model_validate({"mlm": {}}), student.config, student.config,
                        tokenizer=type("T", (), {"mask_token_id": 3, "all_special_ids": [0, 1, 2, 3]})())
    assert terms["mlm"][1].head.predictions.transform.dense.in_features == 32
    distiller = Distiller(student, terms, student, None).eval()
    batch = _batch()
    torch.manual_seed(5)
    loss = distiller(batch)
    torch.manual_seed(5)
    term = distiller.terms["mlm"]
    masked, labels = term.mask(batch["input_ids"], batch["attention_mask"])
    hidden = student(input_ids=masked, attention_mask=batch["attention_mask"], output_hidden_states=True).hidden_states[-1]
    transform = term.head.predictions.transform  # BERT's own head: dense, gelu, LayerNorm, then the tied decoder
    logits = transform(hidden) @ student.bert.embeddings.word_embeddings.weight.T + term.head.predictions.bias
    chosen = labels != -100
    expected = -torch.log_softmax(logits[chosen], -1)[torch.arange(int(chosen.sum())), labels[chosen]].mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert term.head.predictions.decoder.weight is student.bert.embeddings.word_embeddings.weight  # tied, not copied
    assert len(list(distiller.parameters())) == len({id(p) for p in distiller.parameters()})


def test_mlm_starts_from_the_checkpoints_head_where_it_has_one(tmp_path):
    from transformers import AutoModelForMaskedLM

    from bequest.objectives.mlm import mlm_head

    config = _config()
    torch.manual_seed(3)
    with_head = AutoModelForMaskedLM.from_config(config)
    with_head.save_pretrained(tmp_path / "with-head")
    AutoModelForSequenceClassification.from_config(config).bert.save_pretrained(tmp_path / "bare")
    head, _, pretrained = mlm_head(config, config, str(tmp_path / "with-head"))
    assert pretrained and torch.equal(head.predictions.transform.dense.weight, with_head.cls.predictions.transform.dense.weight)
    _, _, pretrained = mlm_head(config, config, str(tmp_path / "bare"))
    assert not pretrained
    narrow = _config(hidden_size=16, num_attention_heads=2, intermediate_size=32)
    head, decoder, pretrained = mlm_head(narrow, config, str(tmp_path / "with-head"))
    assert not pretrained and decoder.in_features == 16  # a new head of the student's width


def test_kd_with_mlm_asks_the_teacher_about_the_masked_text():
    student, teacher = _pair()
    objectives = ObjectivesConfig.model_validate({"kd": {"alpha": 1.0, "temperature": 1.0}, "mlm": {"weight": 0}})
    tokenizer = type("T", (), {"mask_token_id": 3, "all_special_ids": [0, 1, 2, 3]})()
    distiller = Distiller(student, build_terms(objectives, student.config, teacher.config, tokenizer), teacher,
                          soft_targets=torch.full((2, 2), 100.0)).eval()
    batch = _batch()
    torch.manual_seed(1)
    loss = distiller(batch)
    torch.manual_seed(1)
    masked, _ = distiller.terms["mlm"].mask(batch["input_ids"], batch["attention_mask"])
    inputs = {"input_ids": masked, "attention_mask": batch["attention_mask"]}
    expected = F.kl_div(F.log_softmax(student(**inputs).logits, -1), F.log_softmax(teacher(**inputs).logits, -1),
                        log_target=True, reduction="batchmean")
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
