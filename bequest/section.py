"""The base of every recipe section (unknown keys are errors, never silently ignored), and the sections
whose keys are a registry's names (a stage's objectives, a student's initialisers): built from the
registry when validated, so a plugin's entries are recipe keys like the built-in ones."""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_core import PydanticCustomError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


REGISTRIES = {"objectives": ("bequest.objectives.base", "OBJECTIVES"),
              "initialisers": ("bequest.init.base", "INITIALISERS"),
              "layer strategies": ("bequest.init.layers", "LAYER_STRATEGIES")}


def registry(name: str):
    """One of the registries the schema reads, with every built-in entry registered (imported on first use)."""
    import bequest.builtins  # noqa: F401

    module, attribute = REGISTRIES[name]
    return getattr(importlib.import_module(module), attribute)


def initialiser_of(key: str):
    return registry("initialisers")[key].implementation


_SECTION_MODELS: dict[str, tuple[int, type[Section]]] = {}


def registered_model(name: str) -> type[Section]:
    """A section whose keys are the registry's names (each optional, with its entry's config); rebuilt
    when a plugin registers more."""
    entries = registry(name)
    cached = _SECTION_MODELS.get(name)
    if cached is None or cached[0] != entries.version:
        fields = {entry.name: (entry.config | None, Field(None, description=entry.description))
                  for entry in entries if entry.config is not None}
        _SECTION_MODELS[name] = entries.version, create_model(f"Registered_{name.replace(' ', '_')}", __base__=Section, **fields)
    return _SECTION_MODELS[name][1]


def registered_sections(name: str, raw, also: Iterable[str] = ()):
    """The given keys of a registry-built section, validated, in registration order. An unknown key's
    error keeps its path and lists the keys there: `also` (the section's own) and the registered names."""
    if not isinstance(raw, dict):
        return raw
    model = registered_model(name)
    unknown = [key for key in raw if key not in model.model_fields]
    if unknown:
        known = ", ".join([*also, *model.model_fields])
        error = PydanticCustomError("unknown_key", f"unknown key: use one of {known} (bequest list describes the {name})")
        raise ValidationError.from_exception_data(name, [{"type": error, "loc": (unknown[0],), "input": None}])
    validated = model.model_validate(raw)
    return {key: getattr(validated, key) for key in model.model_fields if getattr(validated, key) is not None}


def section_fields(model: type[BaseModel]) -> dict:
    """A section's keys: its own fields and, for one whose keys are also a registry's names, the registry's."""
    fields = dict(model.model_fields)
    if getattr(model, "registered", None):
        fields.update(registered_model(model.registered).model_fields)
    return fields
