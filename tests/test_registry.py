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
    assert {"tasks", "task kinds", "architectures", "importance scorers", "objective builders"} <= set(sections)
    for title, rows in sections.items():
        assert title in shown
        for name, _ in rows:
            assert name in shown, (title, name)
    assert "sst2" in shown and "minilmv2" in shown and "taylor" in shown and "extractive_qa" in shown


def test_every_objective_of_the_recipe_schema_has_a_registered_builder_and_back():
    from bequest.config import ObjectivesConfig
    from bequest.objectives.terms import OBJECTIVES

    assert set(OBJECTIVES.names()) == set(ObjectivesConfig.model_fields)
