"""Layer mappings: which student layer learns from which teacher layer.

Two index spaces: `hidden` objectives read hidden states, where 0 is the embedding output and
i the output of layer i (0..S for a student of S layers); `layer` objectives read a layer's
attention or Q/K/V, indexed 0..S-1. A named mapping is an entry of `MAPPINGS`, a function
(S, L, hidden) -> pairs; a recipe may also give an explicit list of [student, teacher] pairs.
"""

from __future__ import annotations

from bequest.errors import BequestError
from bequest.registry import Registry

MAPPINGS = Registry("layer mapping", "layer mappings (an objective's mapping:)")

Mapping = str | list[tuple[int, int]]


def _round(x: float) -> int:
    return int(x + 0.5)


def uniform(s: int, t: int, hidden: bool) -> list[tuple[int, int]]:
    """With k = L/S: hidden i <- teacher hidden round(i*k); layer i <- teacher layer round((i+1)*k) - 1,
    the last layer of each block (TinyBERT's and How-to-distill's choice)."""
    if hidden:
        return [(i, _round(i * t / s)) for i in range(s + 1)]
    return [(i, _round((i + 1) * t / s) - 1) for i in range(s)]


def last(s: int, t: int, hidden: bool) -> list[tuple[int, int]]:
    """The last student hidden state / layer <- the teacher's last (MiniLM)."""
    return [(s, t)] if hidden else [(s - 1, t - 1)]


MAPPINGS.register("uniform", uniform)
MAPPINGS.register("skip", uniform, description="the same as uniform (PKD's name for it)")
MAPPINGS.register("last", last)


def known_mapping(value):
    """A recipe's mapping, checked: a registered name or a list of pairs (checked against the layers later)."""
    if isinstance(value, str) and value not in MAPPINGS:
        raise ValueError(f"unknown layer mapping '{value}': use one of {', '.join(MAPPINGS.names())} "
                         "or a list of [student, teacher] pairs")
    return value


def layer_pairs(spec: Mapping, student_layers: int, teacher_layers: int, space: str, what: str = "objective") -> list[tuple[int, int]]:
    """Resolve a mapping to (student index, teacher index) pairs and check every index exists."""
    s, t = student_layers, teacher_layers
    hidden = space == "hidden"
    if isinstance(spec, str):
        try:
            return MAPPINGS[spec].implementation(s, t, hidden)
        except BequestError as error:
            raise BequestError(f"{what}: {error}") from None
    top_s, top_t = (s, t) if hidden else (s - 1, t - 1)
    kind = "hidden state" if hidden else "layer"
    for student, teacher in spec:
        if not 0 <= student <= top_s:
            raise BequestError(f"{what}: mapping pair [{student}, {teacher}] names student {kind} {student}, "
                               f"but the student has {kind}s 0..{top_s}")
        if not 0 <= teacher <= top_t:
            raise BequestError(f"{what}: mapping pair [{student}, {teacher}] names teacher {kind} {teacher}, "
                               f"but the teacher has {kind}s 0..{top_t}")
    return [tuple(pair) for pair in spec]
