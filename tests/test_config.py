"""Recipe validation: every mistake is caught before work starts, and names the key."""

import pytest
import yaml
from conftest import tiny_recipe

from bequest.config import (
    dump_config,
    load_config,
    parse_config,
)
from bequest.errors import BequestError
from bequest.recipe_files import apply_override, parse_assignment


def test_defaults_and_round_trip(tmp_path):
    config = parse_config({"task": "SST-2", "students": [{"layers": 3}]})
    assert config.task == "sst2"
    assert config.students[0].init == "lower" and config.students[0].objectives.kd.alpha == 0.5
    path = tmp_path / "r.yaml"
    path.write_text(dump_config(config))
    assert load_config(path) == config


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"task": "sst2", "epochs": 3}, "epochs: unknown key"),
        ({"task": "sst2", "students": [{"layers": 3, "trian": {}}]}, "students.0.trian: unknown key"),
        ({"task": "sst2", "seed": "abc"}, "seed: .*integer.*'abc'"),
        ({"task": "sst2", "students": [{"layers": 3, "objectives": {"kd": {"alpha": 2}}}]}, "students.0.objectives.kd.alpha: .*less than or equal to 1"),
        ({"task": "nope"}, "task: unknown task 'nope'"),
        ({}, "give either task .* or corpus"),
        ({"task": "sst2", "corpus": {"files": ["x.txt"]}}, "not both"),
        ({"corpus": {"files": ["x.txt"]}, "students": [{"layers": 1, "objectives": {"kd": {}}}]}, "kd needs a task"),
        ({"task": "sst2", "students": [{"layers": 2, "init": [0, 1, 2]}]}, "layers is 2 but init lists 3"),
        ({"task": "sst2", "students": [{"init": "upper"}]}, "layers: say how many"),
        ({"task": "sst2", "students": [{"layers": 1}, {"layers": 2}]}, "names must be unique"),
        ({"task": "sst2", "students": [{"layers": 1, "name": "teacher"}]}, "reserved"),
        ({"corpus": {"files": ["x.txt"]}, "data": {"transfer": "t.txt"}, "students": [{"layers": 1, "objectives": {"hidden": {}}}]},
         "data.transfer .* add the texts to corpus.files"),
        ({"task": "squad", "data": {"transfer": "t.txt"}}, "data.transfer: task squad .* does not take a transfer set"),
        ({"task": "sst2", "data": {"transfer": "t.txt"}, "students": [{"layers": 1, "objectives": {"ptp": {}}}]},
         "students.0: ptp reads a label for every example"),
        ({"task": "sst2", "data": {"transfer": "t.txt", "transfer_ratio": 0}}, "data.transfer_ratio: .*greater than 0"),
        ({"task": "sst2", "data": {"augment": {"method": "synonyms"}}}, "data.augment: method: unknown augmentation method "
         "'synonyms': use one of neighbours, mlm, dropout"),
        ({"task": "sst2", "data": {"augment": {"model": "bert-base-uncased"}}}, "model is read by method mlm only"),
        ({"task": "squad", "data": {"augment": {}}}, "data.augment: task squad .* does not take a transfer set"),
    ],
)
def test_invalid_recipes_name_the_key(raw, message):
    with pytest.raises(BequestError, match=message):
        parse_config(raw)


def test_overrides_reach_nested_keys_and_lists():
    raw = {"task": "sst2", "students": [{"layers": 3}]}
    for assignment in ("students.0.train.epochs=1", "students.0.init=[0, 2, 4]", "data.dir=/x", "data.max_train_examples=null"):
        apply_override(raw, *parse_assignment(assignment))
    config = parse_config(raw)
    assert config.students[0].train.epochs == 1
    assert config.students[0].init == [0, 2, 4]
    assert config.data.dir == "/x" and config.data.max_train_examples is None


@pytest.mark.parametrize(
    ("assignment", "message"),
    [("seed", "key=value"), ("seed=[1", "not a valid YAML value"), ("students.3.layers=1", "has 1 entries"), ("seed.x=1", "is a value")],
)
def test_bad_overrides(assignment, message):
    with pytest.raises(BequestError, match=message):
        apply_override({"task": "sst2", "seed": 1, "students": [{}]}, *parse_assignment(assignment))


def test_non_utf8_recipe(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_bytes("name: caf\xe9\ntask: sst2\n".encode("latin-1"))
    with pytest.raises(BequestError, match="not UTF-8"):
        load_config(path)


def test_override_is_validated_like_the_recipe(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"task": "sst2", "students": [{"layers": 3}]}))
    with pytest.raises(BequestError, match="students.0.objectives.kd.temperature: .*greater than 0"):
        load_config(path, [("students.0.objectives.kd.temperature", 0)])


def test_kd_on_a_corpus_names_the_objectives_a_corpus_can_use(tmp_path, tiny_teacher, tiny_glue):
    with pytest.raises(BequestError, match=r"kd needs a task's labels or logits; on a corpus use hidden, .* or mlm\b") as error:
        load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task=None, corpus={"files": [str(tmp_path)]},
                                students=[{"name": "s", "layers": 2, "objectives": {"kd": {}}}]))
    assert "embedding" not in str(error.value)  # the embedding objectives need a sentence-embedding task
