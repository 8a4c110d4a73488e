"""ETD: a student of smaller depth and width cut out of the teacher's own parameters (Chen et al., 2021).

Every parameter axis is labelled with the space it spans: the hidden dimensions (shared by the
whole residual stream: embeddings, LayerNorms, every projection's input or output), one layer's
attention dimensions (whole heads of the teacher's head size), one layer's FFN neurons, or
nothing (vocabulary, positions, labels). A `Selection` keeps a subset of indices per space, and
extraction slices every axis of that space with it, so the student is an ordinary model of the
smaller config. Which indices survive is a scorer's choice (`bequest.init.importance`).

Hugging Face encoders tie the head size to hidden_size / num_attention_heads. ETD keeps whole
heads of the teacher's size, so a narrower hidden size means proportionally fewer heads; WID may
instead keep every head and fewer dimensions in each (`Selection.attention`), in which case the
queries are rescaled so that the narrower heads' 1/sqrt(head size) gives the same scores.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from bequest.errors import BequestError
from bequest.models.arch import all_architectures, ffn_attribute
from bequest.models.loading import layer_list


@dataclass(frozen=True)
class Axis:
    space: str  # "hidden" | "attention" (dimensions, head by head) | "ffn" | "heads" (head indices)
    layer: int | None = None


@dataclass
class Selection:
    """What survives, in teacher indices: `heads` and `ffn` per student layer, sorted. `attention`
    lists each layer's kept attention dimensions when heads lose dimensions (default: all the
    dimensions of the kept heads)."""

    layers: list[int]
    hidden: list[int]
    heads: list[list[int]]
    ffn: list[list[int]]
    attention: list[list[int]] | None = None

    def to_json(self) -> dict:
        kept = {"layers": self.layers, "hidden": self.hidden, "heads": self.heads, "ffn": self.ffn}
        return kept if self.attention is None else {**kept, "attention": self.attention}

    def attention_dims(self, layer: int, teacher_head_size: int) -> list[int]:
        if self.attention is not None:
            return self.attention[layer]
        return [head * teacher_head_size + d for head in self.heads[layer] for d in range(teacher_head_size)]


def ffn_size(config) -> int:
    return getattr(config, ffn_attribute(config.model_type))


def head_size(config) -> int:
    return config.hidden_size // config.num_attention_heads


def axis_labels(model: nn.Module) -> dict[str, tuple[Axis | None, ...]]:
    """For each parameter name, the space each of its axes spans (None: an axis never sliced)."""
    config = model.config
    width = config.hidden_size
    hidden = Axis("hidden")
    prefix, _ = layer_list(model)
    modules = dict(model.named_modules())
    roles = {}
    for family in all_architectures():
        roles.update({name: "qkv" for name in family.projections})
        roles.update({family.attention_output: "attention_out", family.ffn_in: "ffn_in", family.ffn_out: "ffn_out"})
    labels = {}
    for name, param in model.named_parameters():
        module_name, kind = name.rsplit(".", 1)
        if module_name.startswith(prefix + "."):
            index, inner = module_name[len(prefix) + 1 :].split(".", 1)
            attention, ffn = Axis("attention", int(index)), Axis("ffn", int(index))
            role = roles.get(inner)
            by_role = {"qkv": (attention, hidden), "attention_out": (hidden, attention),
                       "ffn_in": (ffn, hidden), "ffn_out": (hidden, ffn)}
            if role is not None:
                labels[name] = by_role[role] if kind == "weight" else by_role[role][:1]
            elif param.ndim == 1 and param.shape[0] == width:  # the layer's LayerNorms
                labels[name] = (hidden,)
            else:
                raise BequestError(f"extraction does not know the parameter {name} of {config.model_type}: "
                                   "this architecture cannot be extracted in width yet")
        elif _shared_bias(module_name):
            labels[name] = (None, Axis("heads"))
        else:
            module = modules[module_name]
            if isinstance(module, nn.Embedding):
                labels[name] = (None, hidden if param.shape[1] == width else None)
            else:  # linears, LayerNorms: an axis of the hidden width is the hidden space
                labels[name] = tuple(hidden if size == width else None for size in param.shape)
    return labels


def _indices(axis: Axis | None, selection: Selection, layer: int | None, config) -> list[int] | None:
    """The kept indices along `axis` of a parameter of student layer `layer` (None: keep all)."""
    if axis is None:
        return None
    if axis.space == "hidden":
        return selection.hidden
    if axis.space == "heads":  # shared across layers: every student layer keeps the same heads
        return selection.heads[0]
    if axis.space == "ffn":
        return selection.ffn[layer]
    return selection.attention_dims(layer, head_size(config))


def _shared_bias(module_name: str) -> bool:
    """A position bias (buckets, heads) shared by all layers (MPNet's): its head axis is sliced like every layer's."""
    return any(family.position_bias and module_name.endswith(family.position_bias) for family in all_architectures())


def shares_heads(model: nn.Module) -> bool:
    return any(_shared_bias(name) for name, _ in model.named_modules())


def student_config(teacher_config, selection: Selection):
    config = copy.deepcopy(teacher_config)
    config.num_hidden_layers = len(selection.layers)
    config.hidden_size = len(selection.hidden)
    config.num_attention_heads = len(selection.heads[0])
    setattr(config, ffn_attribute(config.model_type), len(selection.ffn[0]))
    return config


def extract(teacher: nn.Module, selection: Selection) -> nn.Module:
    """The teacher's architecture at the selection's shape, every parameter sliced from the teacher's."""
    config = teacher.config
    width = len(selection.hidden)
    if any(len(selection.attention_dims(layer, head_size(config))) != width for layer in range(len(selection.layers))):
        raise BequestError(f"a Hugging Face encoder's attention is as wide as its hidden size: keep {width} attention "
                           f"dimensions per layer ({width // head_size(config)} heads of the teacher's head size {head_size(config)})")
    if any(len(set(map(len, group))) != 1 for group in (selection.heads, selection.ffn)):
        raise BequestError("every student layer must keep as many heads and FFN neurons as the others")
    if width % len(selection.heads[0]):
        raise BequestError(f"{len(selection.heads[0])} heads cannot share a hidden size of {width} equally")
    if shares_heads(teacher) and len({tuple(h) for h in selection.heads}) > 1:
        raise BequestError(f"{config.model_type} shares its position bias across layers: every layer must keep the same heads")
    labels = axis_labels(teacher)
    student = type(teacher)(student_config(config, selection))
    teacher_prefix, _ = layer_list(teacher)
    student_prefix, _ = layer_list(student)
    teacher_params = dict(teacher.named_parameters())
    sliced = {}
    for name, param in student.named_parameters():
        source, layer = name, None
        if name.startswith(student_prefix + "."):
            index, rest = name[len(student_prefix) + 1 :].split(".", 1)
            layer = int(index)
            source = f"{teacher_prefix}.{selection.layers[layer]}.{rest}"
        tensor = teacher_params[source].detach()
        for dim, axis in enumerate(labels[source]):
            keep = _indices(axis, selection, layer, config)
            if keep is not None:
                tensor = tensor.index_select(dim, torch.tensor(keep))
        if tensor.shape != param.shape:  # a labelling error, never a user's
            raise AssertionError(f"{name}: sliced {tuple(tensor.shape)}, expected {tuple(param.shape)}")
        if layer is not None and rest.rsplit(".", 1)[0] in {family.query for family in all_architectures()}:
            tensor = tensor * (head_size(student.config) / head_size(config)) ** 0.5  # same q.k/sqrt(d) as the teacher's
        sliced[name] = tensor.clone()
    student.load_state_dict(sliced, strict=False)
    if hasattr(student, "narrowed"):  # a model whose outputs live in the teacher's space (a sentence embedding)
        student.narrowed(selection.hidden, config.hidden_size)
    return student
