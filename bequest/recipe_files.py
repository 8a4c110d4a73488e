"""Recipe files and command-line overrides: YAML read with one-line errors, `--set key=value` applied.

Overrides are applied to the raw YAML before validation, so they are checked exactly like the recipe.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from bequest.errors import BequestError


def parse_assignment(assignment: str) -> tuple[str, object]:
    """Split a `--set dotted.key=value` into the key and the value parsed as YAML (so 3, 1.0e-4, [0, 2], null work)."""
    key, sep, text = assignment.partition("=")
    if not sep or not key:
        raise BequestError(f"--set expects key=value, got '{assignment}' (e.g. --set students.0.train.epochs=1)")
    try:
        return key, yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        raise BequestError(f"--set {key}: '{text}' is not a valid YAML value (quote strings, close brackets)") from None


def apply_override(raw: dict, key: str, value) -> None:
    """Set `value` at the dotted `key` of a raw recipe, creating sections as needed."""
    node = raw
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                where = ".".join(parts[:depth]) or "recipe"
                raise BequestError(f"--set {key}: '{where}' has {len(node)} entries, '{part}' is not one of their indices")
            part = int(part)
        elif not isinstance(node, dict):
            raise BequestError(f"--set {key}: '{'.'.join(parts[:depth])}' is a value, not a section")
        if depth == len(parts) - 1:
            node[part] = value
        else:
            if isinstance(node, dict) and node.get(part) is None:
                node[part] = {}
            node = node[part]


class _DuplicateKey(Exception):
    def __init__(self, key, line: int):
        super().__init__(key)
        self.key, self.line = key, line


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (plain YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) or key is None:
                if key in seen:
                    raise _DuplicateKey(key, key_node.start_mark.line + 1)
                seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml_mapping(path: str | Path, what: str, example: str) -> dict:
    """A YAML file that must hold a mapping (a recipe, a sweep), with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise BequestError(f"{what} {path} not found: give the path of a YAML {what}, e.g. {example}")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except _DuplicateKey as error:
        raise BequestError(f"{what} {path} line {error.line}: the key '{error.key}' is given twice: keep one "
                           "(YAML would silently use the last)") from None
    except UnicodeDecodeError:
        raise BequestError(f"{what} {path} is not UTF-8 text: save it as UTF-8") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise BequestError(f"{what} {path}{line} is not valid YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise BequestError(f"{what} {path} must be a mapping of keys to values, not a {type(raw).__name__}")
    return raw
