"""Importing this module registers every built-in entry: task kinds, architectures, objectives,
layer mappings, initialisers, layer strategies, importance scorers and export formats. The recipe schema imports it
before it reads a registry; a plugin is any module that registers entries the same way."""

import bequest.deploy  # noqa: F401
import bequest.init  # noqa: F401
import bequest.kinds  # noqa: F401
import bequest.models.arch  # noqa: F401
import bequest.objectives  # noqa: F401
