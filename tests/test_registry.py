"""Registries: names resolve to entries, unknown names list the registered ones, `bequest list` shows them all."""

import json
import subprocess
import sys

import pytest

from bequest.errors import BequestError
from bequest.models.arch import ARCHITECTURES, for_type
from bequest.registry import Registry


def test_an_unknown_name_lists_the_registered_ones_and_a_name_cannot_be_taken_twice():
    registry = Registry("widget", "widgets (test)")
    try:
        registry.register("a", object(), description="the first")
        with pytest.raises(BequestError, match=r"unknown widget 'b': use one of a "):
            registry["b"]
        with pytest.raises(BequestError, match="registered twice"):
            registry.register("a", object())
        assert registry["a"].description == "the first" and registry.names() == ["a"]
    finally:
        del Registry.all["widgets (test)"]


def test_architectures_are_found_by_model_type():
    assert for_type("roberta") is ARCHITECTURES["bert"].implementation
    assert for_type("distilbert").ffn_size == "hidden_dim"
    assert for_type("no-such-type") is None


def test_bequest_list_prints_every_registry_and_recipe_name():
    env = {"COLUMNS": "200", "PATH": ""}
    shown = subprocess.run([sys.executable, "-m", "bequest", "list"], capture_output=True, text=True, env=env,
                           check=True).stdout
    # the catalog as a fresh process has it (this one may hold test plugins)
    sections = json.loads(subprocess.run([sys.executable, "-c", "import json; from bequest.catalog import catalog; "
                                          "print(json.dumps(catalog()))"], capture_output=True, text=True, env=env,
                                         check=True).stdout)
    assert {"tasks", "task kinds", "architectures", "importance scorers", "objectives (keys of a stage's objectives:)",
            "student initialisers (keys of a student)", "layer strategies (a student's init:)",
            "layer mappings (an objective's mapping:)"} <= set(sections)
    for title, rows in sections.items():
        assert title in shown
        for name, _ in rows:
            assert name in shown, (title, name)
    assert "sst2" in shown and "minilmv2" in shown and "taylor" in shown and "extractive_qa" in shown


def test_the_recipe_schema_is_the_registries_and_an_unknown_name_lists_them():
    from bequest.config import parse_config
    from bequest.init.base import INITIALISERS
    from bequest.objectives.base import OBJECTIVES
    from bequest.section import registered_model

    assert list(registered_model("objectives").model_fields) == OBJECTIVES.names()
    assert list(registered_model("initialisers").model_fields) == [e.name for e in INITIALISERS if e.config is not None]
    with pytest.raises(BequestError, match=r"students.0.objectives.kdd: unknown key: use one of task, kd, hidden, .*ptp"):
        parse_config({"task": "sst2", "students": [{"layers": 2, "objectives": {"kdd": {}}}]})
    with pytest.raises(BequestError, match=r"students.0.objectives.hidden.mapping: unknown layer mapping 'even': use one of uniform"):
        parse_config({"task": "sst2", "students": [{"layers": 2, "objectives": {"hidden": {"mapping": "even"}}}]})
    with pytest.raises(BequestError, match=r"students.0.init: unknown layer strategy 'top': use one of lower, upper"):
        parse_config({"task": "sst2", "students": [{"layers": 2, "init": "top"}]})
    with pytest.raises(BequestError, match=r"students.0.wdi: unknown key: use one of name, layers, .*, model, extract, wid, sps"):
        parse_config({"task": "sst2", "students": [{"layers": 2, "wdi": {}}]})
    with pytest.raises(BequestError, match=r"students.0.wid.hidden_size: required key is missing"):
        parse_config({"task": "sst2", "students": [{"layers": 2, "wid": {}}]})
