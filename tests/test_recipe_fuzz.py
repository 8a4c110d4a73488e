"""Any recipe either validates or is refused with one line: never a traceback.

Hypothesis edits a valid recipe at keys drawn from the schema (and keys it does not have) with
values of any shape - numbers out of range, NaN, text, lists, sections - and, where the result
validates, runs every check a run makes before work starts against a real (tiny) teacher.
"""

from __future__ import annotations

import typing

import yaml
from conftest import tiny_recipe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from bequest.config import RunConfig, load_config, parse_config
from bequest.errors import BequestError
from bequest.pipeline import check_models
from bequest.recipe_files import apply_override
from bequest.section import section_fields


def _models_in(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def schema_keys(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[str]:
    """Every dotted key of the recipe schema (lists of sections by their first entry)."""
    keys = []
    for name, field in section_fields(model).items():
        key = f"{prefix}{name}"
        keys.append(key)
        listed = typing.get_origin(field.annotation) is list or any(typing.get_origin(a) is list for a in typing.get_args(field.annotation))
        for section in _models_in(field.annotation):
            keys += schema_keys(section, f"{key}.0." if listed else f"{key}.")
    return keys


KEYS = sorted(set(schema_keys())) + ["trian", "students.0.objectives.kd.beta", "students.1.layers", "data.dir.sub"]
LEAVES = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.integers(-3, 300)
          | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
          | st.sampled_from(["lower", "uniform", "random", "kd", "mse", "taylor", "head", "paper", "bf16", "sst2", "stsb"]))
VALUES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
    ["kd", "hidden", "minilmv2", "hidden_size", "layers", "epochs", "mode", "x"]), inner, max_size=3), max_leaves=6)


def test_the_schema_walk_reaches_nested_sections():
    assert {"students.0.wid.w_step", "students.0.stages.0.objectives.kd.alpha", "teacher.finetune.epochs",
            "corpus.dataset.column"} <= set(KEYS)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.sampled_from(KEYS), VALUES), min_size=1, max_size=4))
def test_any_edited_recipe_validates_or_fails_in_one_line(edits, tiny_teacher, tiny_glue, tmp_path_factory):
    raw = yaml.safe_load(tiny_recipe(tmp_path_factory.mktemp("fuzz"), tiny_teacher, tiny_glue).read_text())
    try:
        for key, value in edits:
            apply_override(raw, key, value)
        config = parse_config(raw)
        check_models(config)
    except BequestError as error:
        message = str(error)
        assert message.strip() and "\n" not in message, message


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200) | st.sampled_from(["task: [", "{a: 1, a: 2}", "- 1\n- 2", "\x00", "!!python/object:os.system x"]))
def test_any_recipe_file_validates_or_fails_in_one_line(text, tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        assert isinstance(load_config(path), RunConfig)
    except BequestError as error:
        assert str(error).strip() and "\n" not in str(error), str(error)
