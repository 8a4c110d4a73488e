"""Cached teacher internals: the same losses as the live teacher, without running it."""

import pytest
import torch
from conftest import TINY
from test_objectives import _pair
from transformers import AutoConfig, AutoModelForSequenceClassification

from bequest.config import ObjectivesConfig
from bequest.data.features import Encoded
from bequest.objectives.terms import build_terms
from bequest.train.distiller import Distiller
from bequest.train.teacher_outputs import cache_teacher_outputs, teacher_reads

READERS = {"hidden": {}, "attention_mse": {}, "attention_kl": {}, "value_relation": {},
           "minilmv2": {"relation_heads": 4}, "pkd": {}}


def _data(n=40):
    generator = torch.Generator().manual_seed(5)
    ids = [torch.randint(5, 100, (int(length),), generator=generator).tolist()
           for length in torch.randint(3, 20, (n,), generator=generator)]
    return Encoded(inputs={"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids]}, labels=[i % 2 for i in range(n)])


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float16, 1e-2)])
def test_cached_outputs_give_the_live_teachers_loss_without_running_it(dtype, tolerance):
    student, teacher = _pair()
    terms = build_terms(ObjectivesConfig.model_validate(READERS), student.config, teacher.config)
    data = _data()
    cached, note = cache_teacher_outputs(teacher, data, teacher_reads(terms), budget_mb=100, batch_size=8,
                                         pad_token_id=0, dtype=dtype)
    assert cached is not None and "cached" in note
    live = Distiller(student, terms, teacher, None).eval()
    fast = Distiller(student, terms, teacher, None, cached).eval()
    calls = []
    teacher.register_forward_hook(lambda *_: calls.append(1))
    for indices in ([0, 5, 9], [3, 17, 22, 39], [12]):  # padded unlike the caching pass's length-sorted batches
        batch = data.batch(indices, 0)
        expected = live(batch).item()
        before = len(calls)
        assert fast(batch).item() == pytest.approx(expected, rel=tolerance)
        assert len(calls) == before  # the teacher did not run
    with fast.live_teacher():  # other data than the cached one: the teacher runs again
        fast(data.batch([1, 2], 0))
    assert len(calls) == before + 1


def test_only_what_the_terms_read_is_kept():
    student, teacher = _pair()
    terms = build_terms(ObjectivesConfig.model_validate({"hidden": {"mapping": [[1, 2]]}, "attention_kl": {"mapping": [[0, 3]]}}),
                        student.config, teacher.config)
    assert teacher_reads(terms) == {("hidden", 2), ("queries", 3), ("keys", 3)}
    cached, _ = cache_teacher_outputs(teacher, _data(), teacher_reads(terms), 100, 8, 0)
    assert set(cached.tables) == {("hidden", 2), ("queries", 3), ("keys", 3)}
    assert all(t.dtype == torch.float16 and t.shape == (sum(_data().lengths), 32) for t in cached.tables.values())


def test_over_the_memory_budget_the_teacher_runs_every_step():
    _, teacher = _pair()
    reads = {("hidden", 1), ("hidden", 2)}
    tokens = sum(_data().lengths)
    needed_mb = tokens * 32 * 2 * 2 / 2**20
    cached, note = cache_teacher_outputs(teacher, _data(), reads, needed_mb * 0.99, 8, 0)
    assert cached is None and "runtime.teacher_cache_mb" in note
    cached, _ = cache_teacher_outputs(teacher, _data(), reads, needed_mb * 1.01, 8, 0)
    assert cached is not None


def test_relative_position_bias_attention_is_not_cached():
    torch.manual_seed(0)
    teacher = AutoModelForSequenceClassification.from_config(AutoConfig.for_model("mpnet", vocab_size=100, **TINY)).eval()
    cached, note = cache_teacher_outputs(teacher, _data(), {("queries", 0), ("keys", 0)}, 100, 8, 0)
    assert cached is None and "relative position bias" in note
    cached, _ = cache_teacher_outputs(teacher, _data(), {("hidden", 1)}, 100, 8, 0)
    assert cached is not None
