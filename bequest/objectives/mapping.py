"""Layer mappings: which student layer learns from which teacher layer.

Two index spaces: `hidden` objectives read hidden states, where 0 is the embedding output and
i the output of layer i (0..S for a student of S layers); `layer` objectives read a layer's
attention or Q/K/V, indexed 0..S-1. With k = L/S (L teacher layers):
- `uniform` (alias `skip`): hidden i <- teacher hidden round(i*k); layer i <- teacher layer
  round((i+1)*k) - 1, the last layer of each block (TinyBERT's and How-to-distill's choice);
- `last`: the last student hidden state / layer <- the teacher's last;
- an explicit list of [student, teacher] pairs.
"""

from __future__ import annotations

from bequest.errors import BequestError

Mapping = str | list[tuple[int, int]]


def _round(x: float) -> int:
    return int(x + 0.5)


def layer_pairs(spec: Mapping, student_layers: int, teacher_layers: int, space: str, what: str = "objective") -> list[tuple[int, int]]:
    """Resolve a mapping to (student index, teacher index) pairs and check every index exists."""
    s, t = student_layers, teacher_layers
    hidden = space == "hidden"
    if spec in ("uniform", "skip"):
        if hidden:
            return [(i, _round(i * t / s)) for i in range(s + 1)]
        return [(i, _round((i + 1) * t / s) - 1) for i in range(s)]
    if spec == "last":
        return [(s, t)] if hidden else [(s - 1, t - 1)]
    if isinstance(spec, str):
        raise BequestError(f"{what}: unknown mapping '{spec}': use uniform, skip, last or a list of [student, teacher] pairs")
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
