"""ETD extraction: slices checked against the teacher's own outputs with the same units masked."""

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification

from bequest.errors import BequestError
from bequest.init.extract import (
    Selection,
    axis_labels,
    extract,
    ffn_size,
    head_size,
)
from bequest.init.importance import (
    SCORERS,
    choose,
    magnitude_scores,
    random_scores,
    taylor_scores,
)
from bequest.models.arch import for_layer
from bequest.models.loading import layer_list

ARCHITECTURES = ["bert", "roberta", "mpnet", "electra", "distilbert"]
SHAPE = {**TINY, "hidden_size": 48, "num_attention_heads": 4, "intermediate_size": 40}  # head size 12


def _teacher(model_type):
    torch.manual_seed(0)
    shape = dict(SHAPE)
    if model_type == "distilbert":
        shape["hidden_dim"] = shape.pop("intermediate_size")
    config = AutoConfig.for_model(model_type, vocab_size=100, num_labels=3, **shape)
    return AutoModelForSequenceClassification.from_config(config).eval()


def _inputs():
    generator = torch.Generator().manual_seed(1)
    mask = torch.tensor([[1] * 9, [1] * 5 + [0] * 4])
    return {"input_ids": torch.randint(5, 100, (2, 9), generator=generator) * mask, "attention_mask": mask}


def _full(teacher, layers=None) -> Selection:
    config = teacher.config
    depth = config.num_hidden_layers
    layers = layers if layers is not None else list(range(depth))
    return Selection(layers=layers, hidden=list(range(config.hidden_size)),
                     heads=[list(range(config.num_attention_heads))] * len(layers),
                     ffn=[list(range(ffn_size(config)))] * len(layers))


def _layer_module(teacher, layer, role):
    _, layers = layer_list(teacher)
    return dict(layers[layer].named_modules())[getattr(for_layer(layers[layer]), role)]


def _zero_input_units(module: nn.Module, keep: list[int], unit: int):
    """Reference masking: the module's input keeps only the units `keep` (each `unit` features wide)."""
    def pre_hook(_m, args):
        mask = torch.zeros(args[0].shape[-1])
        for k in keep:
            mask[k * unit:(k + 1) * unit] = 1
        return (args[0] * mask,) + args[1:]
    return module.register_forward_pre_hook(pre_hook)


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_full_width_and_depth_gives_the_teacher_back(model_type):
    teacher = _teacher(model_type)
    student = extract(teacher, _full(teacher)).eval()
    with torch.no_grad():
        assert torch.equal(student(**_inputs()).logits, teacher(**_inputs()).logits)


def _masked_teacher(teacher, selection: Selection):
    """The teacher computing what the extracted student computes, by masking instead of slicing:
    dropped heads and FFN neurons zeroed where they enter their output projection; dropped hidden
    dimensions zeroed after every LayerNorm (statistics over the kept ones) and after every linear
    outside the layers that writes the hidden width (pooler, classifier, embedding projection)."""
    config = teacher.config
    size, width = head_size(config), config.hidden_size
    for layer in range(config.num_hidden_layers):
        _zero_input_units(_layer_module(teacher, layer, "attention_output"), selection.heads[layer], size)
        _zero_input_units(_layer_module(teacher, layer, "ffn_out"), selection.ffn[layer], 1)
    keep = torch.tensor(selection.hidden)
    hidden_mask = torch.zeros(width)
    hidden_mask[keep] = 1
    prefix, _ = layer_list(teacher)
    for name, module in teacher.named_modules():
        if isinstance(module, nn.LayerNorm) and module.normalized_shape == (width,):
            def masked(x, module=module):
                out = torch.zeros_like(x)
                out[..., keep] = F.layer_norm(x[..., keep], (len(keep),), module.weight[keep], module.bias[keep], module.eps)
                return out
            module.forward = masked
        elif isinstance(module, nn.Linear) and module.out_features == width and not name.startswith(prefix + "."):
            module.register_forward_hook(lambda _m, _i, out: out * hidden_mask)
    return teacher


def _assert_same_outputs(model_type, selection):
    teacher = _teacher(model_type)
    student = extract(teacher, selection).eval()
    assert student.config.hidden_size == len(selection.hidden)
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters())
    with torch.no_grad():
        expected = _masked_teacher(teacher, selection)(**_inputs()).logits
        torch.testing.assert_close(student(**_inputs()).logits, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_removed_ffn_neurons_equal_the_teacher_with_them_masked(model_type):
    selection = _full(_teacher(model_type))
    selection.ffn = [[0, 3, 7, 8, 20, 39], [1, 2, 5, 6, 30, 31], [4, 9, 10, 11, 12, 13], [0, 1, 2, 36, 37, 38]]
    _assert_same_outputs(model_type, selection)


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_removed_heads_and_hidden_dims_equal_the_teacher_with_them_masked(model_type):
    # the student keeps the head size (12), so keeping 2 of 4 heads means keeping 24 of 48 hidden dimensions
    selection = _full(_teacher(model_type))
    shared = model_type == "mpnet"  # one position bias for all layers: the same heads everywhere
    selection.heads = [[1, 3]] * 4 if shared else [[0, 3], [1, 2], [2, 3], [0, 1]]
    selection.hidden = sorted(torch.randperm(48, generator=torch.Generator().manual_seed(2))[:24].tolist())
    _assert_same_outputs(model_type, selection)


def test_hidden_dims_alone_are_sliced_everywhere_they_appear():
    teacher = _teacher("bert")
    selection = _full(teacher)
    selection.hidden, selection.heads = list(range(0, 48, 2)), [[0, 1]] * 4
    student = extract(teacher, selection).eval()
    keep = torch.tensor(selection.hidden)
    assert torch.equal(student.bert.embeddings.word_embeddings.weight, teacher.bert.embeddings.word_embeddings.weight[:, keep])
    assert torch.equal(student.bert.pooler.dense.weight, teacher.bert.pooler.dense.weight[keep][:, keep])
    assert torch.equal(student.classifier.weight, teacher.classifier.weight[:, keep])
    assert torch.equal(student.bert.encoder.layer[1].attention.self.query.weight,
                       teacher.bert.encoder.layer[1].attention.self.query.weight[:24][:, keep])


def test_impossible_selections_are_refused():
    teacher = _teacher("bert")
    selection = _full(teacher)
    selection.hidden = list(range(24))  # 24 dims but still 4 heads of 12
    with pytest.raises(BequestError, match="head size"):
        extract(teacher, selection)
    mpnet = _teacher("mpnet")
    selection = _full(mpnet)
    selection.hidden, selection.heads = list(range(24)), [[0, 1], [0, 1], [2, 3], [0, 1]]
    with pytest.raises(BequestError, match="same heads"):
        extract(mpnet, selection)


# ---------------------------------------------------------------- scorers


def _planted():
    """A teacher with one dead head (layer 1, head 2) and one dead FFN neuron (layer 0, neuron 5)."""
    teacher = _teacher("bert")
    with torch.no_grad():
        teacher.bert.encoder.layer[1].attention.output.dense.weight[:, 24:36] = 0
        teacher.bert.encoder.layer[0].intermediate.dense.weight[5] = 0
        teacher.bert.encoder.layer[0].intermediate.dense.bias[5] = 0
        teacher.bert.encoder.layer[0].output.dense.weight[:, 5] = 0
    return teacher


def _batches():
    generator = torch.Generator().manual_seed(3)
    return [{**_inputs(), "labels": torch.randint(0, 3, (2,), generator=generator)} for _ in range(4)]


def _task_loss(model, batch):
    return F.cross_entropy(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, batch["labels"])


@pytest.mark.parametrize("scorer", ["taylor", "magnitude"])
def test_a_planted_dead_head_and_neuron_rank_last(scorer):
    teacher = _planted()
    scores = SCORERS[scorer].implementation(teacher, batches=_batches(), loss_fn=_task_loss, seed=0)
    assert scores.heads[1].argmin().item() == 2
    assert scores.ffn[0].argmin().item() == 5
    if scorer == "taylor":
        assert scores.heads[1][2] == 0 and scores.ffn[0][5] == 0  # no gradient reaches a unit with no weights
    kept = choose(scores, [0, 1], hidden=24, heads=2, ffn=30, shared_heads=False)
    assert 2 not in kept.heads[1] and 5 not in kept.ffn[0] and len(kept.hidden) == 24


def test_taylor_head_scores_are_head_mask_gradients():
    teacher = _teacher("bert")
    batch = _batches()[0]
    scores = taylor_scores(teacher, batches=[batch], loss_fn=_task_loss)
    mask = torch.ones(4, requires_grad=True)  # a head mask on layer 0, applied by hand
    layer = teacher.bert.encoder.layer[0].attention.output.dense
    handle = layer.register_forward_pre_hook(lambda _m, args: ((args[0].view(*args[0].shape[:-1], 4, 12) * mask[:, None]).flatten(-2),))
    _task_loss(teacher, batch).backward()
    handle.remove()
    torch.testing.assert_close(scores.heads[0], mask.grad.abs().double(), rtol=1e-5, atol=1e-8)


def test_taylor_ffn_and_hidden_scores_are_weight_times_gradient():
    teacher = _teacher("bert")
    batch = _batches()[0]
    scores = taylor_scores(teacher, batches=[batch], loss_fn=_task_loss)
    teacher.zero_grad()
    _task_loss(teacher, batch).backward()
    ffn_in, ffn_out = teacher.bert.encoder.layer[2].intermediate.dense, teacher.bert.encoder.layer[2].output.dense
    expected = ((ffn_in.weight * ffn_in.weight.grad).sum(1).abs() + (ffn_in.bias * ffn_in.bias.grad).abs()
                + (ffn_out.weight * ffn_out.weight.grad).sum(0).abs())
    torch.testing.assert_close(scores.ffn[2], expected.double(), rtol=1e-4, atol=1e-9)
    labels = axis_labels(teacher)
    hidden = sum(((p * p.grad).sum(dim=[d for d in range(p.ndim) if d != axis]) if p.ndim > 1 else p * p.grad).abs()
                 for name, p in teacher.named_parameters() if p.grad is not None
                 for axis, label in enumerate(labels[name]) if label is not None and label.space == "hidden")
    torch.testing.assert_close(scores.hidden, hidden.double(), rtol=1e-4, atol=1e-9)


def test_random_scores_depend_only_on_the_seed():
    teacher = _teacher("bert")
    a, b, c = random_scores(teacher, seed=1), random_scores(teacher, seed=1), random_scores(teacher, seed=2)
    assert torch.equal(a.hidden, b.hidden) and not torch.equal(a.hidden, c.hidden)
    assert magnitude_scores(teacher).hidden.shape == (48,)
