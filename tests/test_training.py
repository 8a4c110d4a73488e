"""The training loop: batch order, determinism, and resume that ends bit-identical."""

import pytest
import torch
from accelerate import Accelerator
from conftest import TINY
from transformers import AutoConfig, AutoModelForSequenceClassification

import bequest.train.loop as loop
from bequest.config import TrainConfig
from bequest.data.features import Encoded, inference_batches, training_batches
from bequest.kinds import CLASSIFICATION


def _data(n=70):
    generator = torch.Generator().manual_seed(3)
    lengths = torch.randint(3, 20, (n,), generator=generator).tolist()
    ids = [torch.randint(5, 100, (length,), generator=generator).tolist() for length in lengths]
    return Encoded(inputs={"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids]},
                   labels=[i % 2 for i in range(n)])


def test_batches_cover_every_example_once_and_depend_only_on_seed_and_epoch():
    lengths = [len(x) for x in _data(1000).inputs["input_ids"]]
    batches = training_batches(lengths, 16, seed=1, epoch=0, group_by_length=True)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert batches == training_batches(lengths, 16, seed=1, epoch=0, group_by_length=True)
    assert batches != training_batches(lengths, 16, seed=1, epoch=1, group_by_length=True)
    assert batches != training_batches(lengths, 16, seed=2, epoch=0, group_by_length=True)

    def padding(bs):
        return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in bs)

    random_order = training_batches(lengths, 16, seed=1, epoch=0, group_by_length=False)
    assert padding(batches) < padding(random_order) / 3


def test_dynamic_padding_pads_to_the_longest_in_the_batch():
    data = _data()
    batch = data.batch([0, 1, 2], pad_token_id=0)
    longest = max(len(data.inputs["input_ids"][i]) for i in (0, 1, 2))
    assert batch["input_ids"].shape == (3, longest)
    assert batch["attention_mask"].sum().item() == sum(len(data.inputs["input_ids"][i]) for i in (0, 1, 2))
    assert batch["index"].tolist() == [0, 1, 2]
    order = [i for b in inference_batches(data.lengths, 8) for i in b]
    assert sorted(order) == list(range(len(data)))


def _model():
    torch.manual_seed(0)
    config = AutoConfig.for_model("bert", vocab_size=100, num_labels=2, **{**TINY, "num_hidden_layers": 2})
    return AutoModelForSequenceClassification.from_config(config)


def _train(model, directory, cfg=TrainConfig(epochs=2, batch_size=8, learning_rate=1e-3, checkpoint_every=4)):
    return loop.train(model, _data(), lambda m, b: CLASSIFICATION.loss(m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits, b["labels"]),
                      cfg, seed=11, pad_token_id=0, accelerator=Accelerator(cpu=True), checkpoint_dir=directory,
                      evaluate=lambda m: {"score": 0.5})


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_same_seed_same_weights(tmp_path):
    first, second = _model(), _model()
    _train(first, tmp_path / "a")
    _train(second, tmp_path / "b")
    assert all(torch.equal(a, b) for a, b in zip(_weights(first).values(), _weights(second).values()))
    assert not torch.equal(_weights(first)["classifier.weight"], _weights(_model())["classifier.weight"])


@pytest.mark.parametrize("kill_at_save", [1, 2, 3])
def test_resume_after_a_kill_ends_bit_identical(tmp_path, monkeypatch, kill_at_save):
    reference = _model()
    history = _train(reference, tmp_path / "reference")

    real_save, saves = loop._save_checkpoint, []

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        saves.append(1)
        if len(saves) == kill_at_save:
            raise KeyboardInterrupt  # the process dies right after writing this checkpoint

    monkeypatch.setattr(loop, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _train(_model(), tmp_path / "killed")
    monkeypatch.setattr(loop, "_save_checkpoint", real_save)
    resumed = _model()  # a fresh process: weights come only from the checkpoint
    assert loop.latest_checkpoint(tmp_path / "killed") is not None
    resumed_history = _train(resumed, tmp_path / "killed")
    for key in ("evaluations", "curve"):
        assert resumed_history[key] == history[key]
    for (key, a), b in zip(_weights(reference).items(), _weights(resumed).values()):
        assert torch.equal(a, b), key


def test_resume_restores_python_numpy_and_torch_random_streams(tmp_path, monkeypatch):
    """A loss that draws from python's, numpy's and torch's generators (as augmentation or masking would):
    a resumed process whose generators start elsewhere still ends bit-identical."""
    import random

    import numpy as np

    def noisy_loss(m, b):
        noise = 1 + 0.1 * (random.random() + float(np.random.rand()) + torch.rand(()).item())
        return noise * CLASSIFICATION.loss(m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits, b["labels"])

    cfg = TrainConfig(epochs=2, batch_size=8, learning_rate=1e-3, checkpoint_every=4)

    def run(model, directory):
        return loop.train(model, _data(), noisy_loss, cfg, seed=11, pad_token_id=0, accelerator=Accelerator(cpu=True),
                          checkpoint_dir=directory)

    random.seed(0), np.random.seed(0)
    reference = _model()
    run(reference, tmp_path / "reference")
    real_save = loop._save_checkpoint

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_save_checkpoint", save_then_die)
    random.seed(0), np.random.seed(0)
    with pytest.raises(KeyboardInterrupt):
        run(_model(), tmp_path / "killed")
    monkeypatch.setattr(loop, "_save_checkpoint", real_save)
    random.seed(123), np.random.seed(123), torch.manual_seed(123)  # a fresh process's generators are elsewhere
    resumed = _model()
    run(resumed, tmp_path / "killed")
    for (key, a), b in zip(_weights(reference).items(), _weights(resumed).values()):
        assert torch.equal(a, b), key


def test_a_half_written_checkpoint_is_ignored(tmp_path):
    (tmp_path / ".checkpoint-4.abc.tmp").mkdir()
    (tmp_path / "checkpoint-x").mkdir()
    assert loop.latest_checkpoint(tmp_path) is None


def test_max_steps_stops_mid_epoch_and_the_curve_averages_windows(tmp_path):
    # 70 examples / batch 8 = 9 steps per epoch; 13 steps end inside the second epoch
    cfg = TrainConfig(epochs=1, max_steps=13, batch_size=8, learning_rate=1e-3, log_every=5, checkpoint_every=100)
    losses = []
    model = _model()

    def loss_fn(m, b):
        loss = CLASSIFICATION.loss(m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits, b["labels"])
        losses.append(loss.item())
        return loss

    log = loop.train(model, _data(), loss_fn, cfg, seed=11, pad_token_id=0, accelerator=Accelerator(cpu=True),
                     checkpoint_dir=tmp_path)
    assert len(losses) == 13
    assert [(e["epoch"], e["step"]) for e in log["evaluations"]] == [(1, 9), (2, 13)]
    assert log["evaluations"][1]["train_loss"] == pytest.approx(sum(losses[9:]) / 4)
    assert [c["step"] for c in log["curve"]] == [5, 10]
    assert log["curve"][1]["train_loss"] == pytest.approx(sum(losses[5:10]) / 5)


def test_the_fused_optimiser_takes_the_reference_adamw_steps(tmp_path):
    cfg = TrainConfig(learning_rate=1e-2, weight_decay=0.1)
    fused_model, reference_model = _model().eval(), _model().eval()  # no dropout: both see the same gradients
    fused = loop._optimizer(fused_model, cfg, torch.device("cpu"))
    assert fused.defaults["fused"]
    decay = [p for p in reference_model.parameters() if p.ndim >= 2]
    no_decay = [p for p in reference_model.parameters() if p.ndim < 2]
    reference = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=1e-2, foreach=False)
    batch = _data().batch(list(range(8)), 0)
    for model, optimizer in ((fused_model, fused), (reference_model, reference)):
        for _ in range(3):
            CLASSIFICATION.loss(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, batch["labels"]).backward()
            optimizer.step()
            optimizer.zero_grad()
    for a, b in zip(fused_model.parameters(), reference_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # lr 1e-2: a wrong update is far larger
    assert not torch.equal(fused_model.classifier.weight, _model().classifier.weight)


def test_runtime_precision_and_compile_reach_the_prepared_model():
    from bequest.config import RuntimeConfig
    from bequest.errors import BequestError
    from bequest.train.runtime import make_accelerator

    def computed_dtype(precision):
        model, seen = torch.nn.Sequential(torch.nn.Linear(4, 4)), []  # outputs return as fp32: look inside
        model[0].register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
        make_accelerator(RuntimeConfig(precision=precision)).prepare(model)(torch.randn(2, 4))
        return seen[0]

    assert computed_dtype("bf16") == torch.bfloat16
    assert computed_dtype("fp32") == torch.float32
    compiled = make_accelerator(RuntimeConfig(compile=True)).prepare(torch.nn.Linear(4, 4))
    assert isinstance(compiled, torch._dynamo.eval_frame.OptimizedModule)
    if not torch.cuda.is_available():
        with pytest.raises(BequestError, match="fp16 needs a CUDA GPU"):
            make_accelerator(RuntimeConfig(precision="fp16"))


def test_eval_every_adds_evaluations_inside_epochs(tmp_path):
    cfg = TrainConfig(epochs=1, max_steps=13, batch_size=8, learning_rate=1e-3, eval_every=4, checkpoint_every=100)
    losses, modes = [], []

    def loss_fn(m, b):
        modes.append(m.training)
        loss = CLASSIFICATION.loss(m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits, b["labels"])
        losses.append(loss.item())
        return loss

    def evaluate(m):
        m.eval()
        return {"score": float(len(losses))}

    log = loop.train(_model(), _data(), loss_fn, cfg, seed=11, pad_token_id=0, accelerator=Accelerator(cpu=True),
                     checkpoint_dir=tmp_path, evaluate=evaluate)
    assert [(e["epoch"], e["step"], e["score"]) for e in log["evaluations"]] == [(1, 4, 4), (1, 8, 8), (1, 9, 9), (2, 12, 12), (2, 13, 13)]
    assert log["evaluations"][0]["train_loss"] == pytest.approx(sum(losses[:4]) / 4)
    assert log["evaluations"][3]["train_loss"] == pytest.approx(sum(losses[9:12]) / 3)
    assert all(modes)  # training resumes in training mode after each evaluation


def _no_dropout_model():
    torch.manual_seed(0)
    config = AutoConfig.for_model("bert", vocab_size=100, num_labels=2, **{**TINY, "num_hidden_layers": 2},
                                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return AutoModelForSequenceClassification.from_config(config)


def test_gradient_accumulation_takes_the_same_steps_with_the_same_gradients(tmp_path, monkeypatch):
    """Micro-batches of a batch, each padded to its own longest example, add up to the batch's gradient:
    the same optimiser steps, the same logged losses and (up to float rounding) the same weights.
    Plain SGD stands in for AdamW here: Adam divides by the gradient's own size, so a parameter whose
    gradient is rounding noise moves a whole learning rate either way and hides what is compared."""
    monkeypatch.setattr(loop, "_optimizer", lambda model, cfg, device: torch.optim.SGD(model.parameters(), lr=cfg.learning_rate))
    runs = {}
    for steps in (1, 3):
        model = _no_dropout_model()
        cfg = TrainConfig(epochs=2, batch_size=8, learning_rate=0.5, checkpoint_every=100, log_every=2,
                          gradient_accumulation_steps=steps)
        runs[steps] = (_train(model, tmp_path / str(steps), cfg), _weights(model))
    (whole, whole_weights), (parts, part_weights) = runs[1], runs[3]
    assert [row["step"] for row in parts["curve"]] == [row["step"] for row in whole["curve"]]
    for a, b in zip(whole["curve"] + whole["evaluations"], parts["curve"] + parts["evaluations"]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)  # fp32 sums in another order
    start = _weights(_no_dropout_model())
    moved = max((whole_weights[k] - start[k]).abs().max().item() for k in whole_weights)
    worst = max((whole_weights[k] - part_weights[k]).abs().max().item() for k in whole_weights)
    assert moved > 1e-2 and worst < 1e-5, (moved, worst)


def test_a_callback_runs_once_per_optimiser_step_however_many_micro_batches(tmp_path):
    from bequest.callbacks import Callback

    class Count(Callback):
        begins, ends, epochs = [], [], []

        def on_step_begin(self, state):
            self.begins.append(state.state.step)

        def on_step_end(self, state):
            self.ends.append(state.state.step)

        def on_epoch_end(self, state):
            self.epochs.append(state.state.epoch)

    forwards = []
    model = _no_dropout_model()
    model.register_forward_pre_hook(lambda *_: forwards.append(1))
    cfg = TrainConfig(epochs=2, batch_size=8, learning_rate=1e-3, checkpoint_every=100, gradient_accumulation_steps=2)
    loop.train(model, _data(), lambda m, b: CLASSIFICATION.loss(m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits,
                                                               b["labels"]),
               cfg, seed=11, pad_token_id=0, accelerator=Accelerator(cpu=True), checkpoint_dir=tmp_path, callbacks=[Count()])
    steps = 2 * 9  # 70 examples in batches of 8: 9 steps an epoch
    assert Count.begins == list(range(steps)) and Count.ends == list(range(1, steps + 1)) and Count.epochs == [1, 2]
    assert len(forwards) == 2 * steps  # two micro-batches a step
