"""The recipe reference (docs/recipe.md), generated from the schema so that it cannot drift from it.

    python -m bequest.reference > docs/recipe.md

A test regenerates it and fails when the file in the repository is stale.
"""

from __future__ import annotations

import json
import typing

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from bequest.config import RunConfig
from bequest.section import section_fields


def _sections(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _sections(arg)]


def _type(annotation) -> str:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    text = getattr(annotation, "__name__", None) if not typing.get_args(annotation) else None
    text = text or str(annotation).replace("typing.", "")
    for section in _sections(annotation):
        text = text.replace(f"{section.__module__}.{section.__qualname__}", "section")
    return text.replace("NoneType", "null").replace("Literal", "one of ")


def _default(field) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):  # a section's default: the keys it sets, the others as in its own table
        return f"`{json.dumps(value.model_dump(mode='json', exclude_unset=True))}`" if value.model_fields_set else "its defaults"
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return f"`{json.dumps([item.model_dump(mode='json', exclude_unset=True) for item in value])}`"
    return f"`{json.dumps(value, default=str)}`"


def _title(prefix: str) -> str:
    return f"## `{prefix.rstrip('.') or 'top level'}`"


def _table(model: type[BaseModel], prefix: str, seen: list[tuple[str, type[BaseModel]]]) -> list[str]:
    rows = [_title(prefix), "", (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " "), "",
            "| key | type | default | what it does |", "|---|---|---|---|"]
    for name, field in section_fields(model).items():
        key = f"{prefix}{name}"
        listed = "list[" in str(field.annotation)
        for section in _sections(field.annotation):
            seen.append((f"{key}.N." if listed else f"{key}.", section))
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{key}` | {_type(field.annotation).replace('|', 'or')} | {_default(field)} | {description} |")
    return rows + [""]


def recipe_reference() -> str:
    lines = ["# Recipe reference", "",
             "Every key a recipe (or `--set`) takes, its type and its default, generated from bequest's schema "
             "(`python -m bequest.reference > docs/recipe.md`). A key left out takes its default; an unknown key is an error.",
             "Sections whose default is \"its defaults\" can be left out whole.", ""]
    queue, documented = [("", RunConfig)], {}
    while queue:
        prefix, model = queue.pop(0)
        if model in documented:  # a section met again (a stage's objectives are a student's): said once
            lines += [_title(prefix), "", f"The same keys as `{documented[model].rstrip('.')}` above.", ""]
            continue
        documented[model] = prefix
        found: list[tuple[str, type[BaseModel]]] = []
        lines += _table(model, prefix, found)
        queue += found
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(recipe_reference(), end="")
