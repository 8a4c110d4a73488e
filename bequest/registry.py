"""Registries: what a recipe may name, each entry with its implementation, its config and a description.

Task kinds, tasks, student initialisers, layer strategies, objectives, importance scorers, layer
mappings and architectures are each one `Registry`. The recipe schema is built from them, so a
name registered by a plugin is a recipe key like a built-in one, and an unknown name's error
lists the registered ones. `bequest list` prints them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bequest.errors import BequestError


@dataclass(frozen=True)
class Entry:
    name: str
    implementation: Any
    config: Any  # the pydantic class (or type) of its recipe section; None when it takes none
    description: str


class Registry:
    """Names -> entries, in registration order. `kind` names the entries in messages ("objective")."""

    all: dict[str, Registry] = {}  # every registry, by title, for `bequest list`

    def __init__(self, kind: str, title: str):
        self.kind, self.title = kind, title
        self._entries: dict[str, Entry] = {}
        self.version = 0  # bumped by every registration: the recipe schema is rebuilt when it changes
        Registry.all[title] = self

    def register(self, name: str, implementation: Any = None, *, config: Any = None, description: str = ""):
        """Register `implementation` under `name`; used bare or as a class/function decorator."""
        def add(impl):
            if name in self._entries:
                raise BequestError(f"{self.kind} {name!r} is registered twice: choose another name")
            self._entries[name] = Entry(name, impl, config, description or (impl.__doc__ or "").strip().split("\n")[0])
            self.version += 1
            return impl

        return add(implementation) if implementation is not None else add

    def __getitem__(self, name: str) -> Entry:
        if name not in self._entries:
            raise BequestError(f"unknown {self.kind} {name!r}: use one of {', '.join(self._entries)} "
                               f"(bequest list shows them all)")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self._entries.values())

    def names(self) -> list[str]:
        return list(self._entries)
