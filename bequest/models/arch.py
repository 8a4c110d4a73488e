"""Architecture knowledge in one place: where each encoder family keeps what bequest reads and cuts.

Names are relative to one transformer layer (the layer list itself is found by structure, see
`bequest.models.loading.layer_list`). Capture (Q/K/V hooks), ETD extraction, WID's compactors,
importance scoring and SPS read these entries; a new family is one `ARCHITECTURES.register`.
"""

from __future__ import annotations

from dataclasses import dataclass

from bequest.registry import Registry


@dataclass(frozen=True)
class Architecture:
    model_types: tuple[str, ...]  # config.model_type values of this family (others match by their modules' names)
    query: str
    key: str
    value: str
    attention_output: str
    ffn_in: str
    ffn_out: str
    ffn_size: str = "intermediate_size"  # the config attribute of the FFN width
    position_bias: str | None = None  # a learned relative position bias shared by all layers, if any

    @property
    def projections(self) -> tuple[str, str, str]:
        return self.query, self.key, self.value


ARCHITECTURES = Registry("architecture", "architectures")
ARCHITECTURES.register("bert", Architecture(
    ("bert", "roberta", "xlm-roberta", "camembert", "electra", "data2vec-text", "roberta-prelayernorm", "xmod"),
    "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
    "intermediate.dense", "output.dense"),
    description="BERT, RoBERTa, XLM-R, CamemBERT, ELECTRA and their kin (attention.self.query ...)")
ARCHITECTURES.register("mpnet", Architecture(
    ("mpnet",), "attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o",
    "intermediate.dense", "output.dense", position_bias="relative_attention_bias"),
    description="MPNet: a relative position bias shared by all layers")
ARCHITECTURES.register("distilbert", Architecture(
    ("distilbert",), "attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin",
    "ffn.lin1", "ffn.lin2", ffn_size="hidden_dim"),
    description="DistilBERT (q_lin ..., FFN width in hidden_dim)")

# model_types whose position ids start after the padding index (RoBERTa's scheme): they hold
# max_position_embeddings - padding_idx - 1 tokens.
PADDING_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "mpnet", "data2vec-text", "roberta-prelayernorm", "xmod"}


def for_type(model_type: str) -> Architecture | None:
    """The registered family of a config's model_type, or None."""
    return next((entry.implementation for entry in ARCHITECTURES if model_type in entry.implementation.model_types), None)


def for_layer(layer) -> Architecture | None:
    """The family whose Q/K/V names this layer module has (matches unlisted model_types built alike)."""
    names = dict(layer.named_modules())
    return next((entry.implementation for entry in ARCHITECTURES
                 if all(name in names for name in entry.implementation.projections)), None)


def all_architectures() -> list[Architecture]:
    return [entry.implementation for entry in ARCHITECTURES]


def ffn_attribute(model_type: str) -> str:
    found = for_type(model_type)
    return found.ffn_size if found else "intermediate_size"


def position_bias(model_type: str) -> str | None:
    found = for_type(model_type)
    return found.position_bias if found else None


