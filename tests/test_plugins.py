"""A scorer registered from outside bequest/ (tests/plugins) is a recipe value like a built-in one, and is used."""

from types import SimpleNamespace

import pytest
from transformers import AutoModel

from bequest.errors import BequestError
from bequest.init.etd import ExtractConfig, check_extract, extract_student
from bequest.init.extract import shares_heads
from bequest.init.importance import choose, magnitude_scores


def test_a_plugin_scorer_is_accepted_by_name_and_chooses_the_units(tiny_teacher):
    teacher = AutoModel.from_pretrained(tiny_teacher)
    config = teacher.config
    spec = ExtractConfig(hidden_size=config.hidden_size // 2, scorer="least_magnitude")
    with pytest.raises(BequestError, match="unknown: use one of random, magnitude, taylor"):
        check_extract(spec, teacher, None, on_task=True)  # not registered yet
    import plugins.least_magnitude  # noqa: F401  (registers it)

    check_extract(spec, teacher, None, on_task=True)
    unused_data = SimpleNamespace(lengths=[8] * 4)  # only the taylor scorer reads batches
    _, selection, _ = extract_student(teacher, [0, 1], spec, unused_data, None, 0, seed=0)
    heads = spec.hidden_size // (config.hidden_size // config.num_attention_heads)
    neurons = round(config.intermediate_size * spec.hidden_size / config.hidden_size)
    largest = magnitude_scores(teacher)
    smallest = plugins.least_magnitude.least_magnitude_scores(teacher)
    assert selection == choose(smallest, [0, 1], spec.hidden_size, heads, neurons, shares_heads(teacher))
    assert selection.hidden != choose(largest, [0, 1], spec.hidden_size, heads, neurons, shares_heads(teacher)).hidden
