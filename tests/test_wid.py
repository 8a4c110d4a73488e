"""WID compactors: merges checked by comparing the dense model's outputs with the wrapped model's."""

import pytest
import torch
from test_extract import ARCHITECTURES, _inputs, _teacher
from torch.func import functional_call

from bequest.config import TrainConfig
from bequest.errors import BequestError
from bequest.init.wid import UPDATES, Compacting, WIDConfig, wid_shape
from bequest.models.loading import count_parameters
from bequest.train import loop

# the tiny teacher: hidden 48, 4 heads of 12, FFN 40, 4 layers
DIM = WIDConfig(hidden_size=24, intermediate_size=20, strategy="dim", w_step=1)  # 4 heads of 6
HEAD = WIDConfig(hidden_size=24, intermediate_size=20, strategy="head", w_step=1)  # 2 heads of 12


def _randomised(model, spec, update=UPDATES, seed=3) -> Compacting:
    """A wrapped model with random compactors and biases, masks after `update` of the 16 updates."""
    wrapped = Compacting(model, spec)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in wrapped.compactors.values():
            param.add_(0.3 * torch.randn(param.shape, generator=generator))
        for name, param in wrapped.model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name:
                param.add_(0.2 * torch.randn(param.shape, generator=generator))
    wrapped.update_masks(update)
    return wrapped.eval()


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_identity_compactors_merge_to_the_original_weights(model_type):
    teacher = _teacher(model_type)
    merged = Compacting(teacher, DIM).merge()
    original = teacher.state_dict()
    for name, tensor in merged.state_dict().items():
        assert torch.equal(tensor, original[name]), name


@pytest.mark.parametrize("spec", [DIM, HEAD], ids=["dim", "head"])
@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_merged_model_computes_what_the_masked_wrapped_model_computes(model_type, spec):
    wrapped = _randomised(_teacher(model_type), spec)
    merged = wrapped.merge().eval()
    hidden, heads, neurons = wid_shape(wrapped.config, spec)
    assert (merged.config.hidden_size, merged.config.num_attention_heads) == (hidden, heads)
    assert count_parameters(merged) < count_parameters(wrapped.model)
    with torch.no_grad():
        expected, got = wrapped(**_inputs()).logits, merged(**_inputs()).logits
    assert expected.abs().max() > 0.1  # a real signal, not a dead network
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("update", [1, 5, 11])
def test_any_point_of_the_schedule_can_be_merged(update):
    wrapped = _randomised(_teacher("bert"), DIM, update=update)
    merged = wrapped.merge().eval()
    # 12-dim heads lose 6 dims over 16 updates: round(update * 6 / 16) per head
    assert merged.config.hidden_size == 48 - 4 * round(update * 6 / 16)
    with torch.no_grad():
        torch.testing.assert_close(merged(**_inputs()).logits, wrapped(**_inputs()).logits, atol=1e-5, rtol=1e-5)


def test_schedule_marks_the_smallest_compactor_channels_and_never_unmarks():
    wrapped = Compacting(_teacher("bert"), DIM)
    with torch.no_grad():  # make hidden dimension 7 the weakest everywhere
        for name, dim, axis in wrapped.uses:
            if name.startswith("compactors.") and axis.space == "hidden":
                param = dict(wrapped.named_parameters())[name]
                param.index_fill_(dim, torch.tensor([7]), 0.01)
    wrapped.update_masks(3)  # round(3 * 6 / 16) = 1 dimension per head, so 4 hidden dimensions
    assert int((~wrapped.kept_hidden).sum()) == 4 and not wrapped.kept_hidden[7]
    before = ~wrapped.kept_hidden.clone()
    for update in range(4, UPDATES + 1):
        wrapped.update_masks(update)
        assert (~wrapped.kept_hidden)[before].all()  # marks never lift
        before = ~wrapped.kept_hidden.clone()
    assert int(wrapped.kept_hidden.sum()) == 24
    assert (wrapped.kept_ffn.sum(1) == 20).all()
    per_head = wrapped.kept_attention.view(4, 4, 12).sum(-1)
    assert (per_head == 6).all()


def test_head_strategy_drops_whole_heads_and_shares_them_where_the_architecture_does():
    wrapped = _randomised(_teacher("mpnet"), HEAD)
    kept = wrapped.kept_attention.view(4, 4, 12)
    assert ((kept.all(-1)) | (~kept.any(-1))).all()  # a head is kept whole or dropped whole
    assert (kept.all(-1).sum(-1) == 2).all()
    assert all(torch.equal(kept[0], kept[layer]) for layer in range(4))  # MPNet's shared position bias


def test_marked_channels_go_to_zero_during_training_and_kept_ones_train():
    torch.manual_seed(0)
    model = _teacher("bert").train()
    spec = WIDConfig(hidden_size=24, intermediate_size=20, w_step=1, compactor_learning_rate=0.002, l2_lambda=250)
    wrapped = Compacting(model, spec)
    initial = {name: param.detach().clone() for name, param in wrapped.named_parameters()}
    optimizer = loop._optimizer(wrapped, TrainConfig(learning_rate=1e-3), torch.device("cpu"))
    compactor_group = next(g for g in optimizer.param_groups if any(p is wrapped.compactors["embeddings"] for p in g["params"]))
    assert compactor_group["lr"] == 0.002 and compactor_group["weight_decay"] == 0.0
    labels = torch.tensor([0, 2])
    for _ in range(UPDATES + 30):
        wrapped.advance()  # what the training loop's MaskSchedule callback does before each optimiser step
        loss = torch.nn.functional.cross_entropy(wrapped(**_inputs()).logits, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    params = dict(wrapped.named_parameters())
    marked_norm, kept_change = 0.0, 0.0
    for name, dim, axis in wrapped.uses:
        kept = wrapped.kept(axis)
        marked = params[name].detach().index_select(dim, (~kept).nonzero().squeeze(1))
        marked_norm = max(marked_norm, marked.abs().max().item())
        changed = (params[name].detach() - initial[name]).index_select(dim, kept.nonzero().squeeze(1))
        kept_change = max(kept_change, changed.abs().max().item())
    # the last marks were made at step 16, halved at every step since (and no longer trained, but
    # Adam's momentum from before fades over about ten steps)
    assert marked_norm < 1e-3
    assert kept_change > 1e-3  # kept channels still learn
    # so dropping them (evaluation mode, the merge) changes the outputs by next to nothing
    wrapped.eval()
    with torch.no_grad():
        unmasked = functional_call(wrapped.model, wrapped.effective(hard=False), (), _inputs()).logits
        torch.testing.assert_close(wrapped(**_inputs()).logits, unmasked, atol=1e-3, rtol=1e-3)


def test_masks_and_compactors_survive_a_checkpoint(tmp_path):
    from safetensors.torch import load_model, save_model

    wrapped = _randomised(_teacher("bert"), DIM, update=7)
    save_model(wrapped, str(tmp_path / "model.safetensors"))
    fresh = Compacting(_teacher("bert"), DIM)
    load_model(fresh, str(tmp_path / "model.safetensors"))
    fresh.eval()
    assert torch.equal(fresh.kept_hidden, wrapped.kept_hidden)
    with torch.no_grad():
        assert torch.equal(fresh.merge().eval()(**_inputs()).logits, wrapped.merge().eval()(**_inputs()).logits)


def test_mask_updates_are_logged(tmp_path):
    import json

    wrapped = Compacting(_teacher("bert"), DIM, mask_log=tmp_path / "masks.jsonl")
    for update in (1, 2):
        wrapped.update_masks(update)
    rows = [json.loads(line) for line in (tmp_path / "masks.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == [1, 2]
    assert rows[1]["hidden"] == wrapped.kept_hidden.nonzero().squeeze(1).tolist()


@pytest.mark.parametrize("spec, message", [
    (WIDConfig(hidden_size=64), "larger than the teacher's 48"),
    (WIDConfig(hidden_size=30, strategy="dim"), "multiple of 4"),
    (WIDConfig(hidden_size=30, strategy="head"), "multiple of 12"),
    (WIDConfig(hidden_size=24, intermediate_size=50), "only 40 FFN neurons"),
])
def test_impossible_shapes_are_refused(spec, message):
    with pytest.raises(BequestError, match=message):
        wid_shape(_teacher("bert").config, spec)
