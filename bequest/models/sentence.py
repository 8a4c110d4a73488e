"""A sentence-embedding model as sentence-transformers builds one: encoder -> pooling -> (Dense) -> (Normalize).

Read from a sentence-transformers folder by parsing its `modules.json` and module configs (JSON only:
no class the folder names is imported), or from a plain encoder folder with the recipe's pooling. Its
forward returns the sentence embedding as `logits`, so the run predicts, caches and times it as any
head's output. Saved through sentence-transformers' own modules, so `SentenceTransformer(folder)`
loads the export offline and gives the embeddings bequest scored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import AutoModel, PretrainedConfig

from bequest.errors import BequestError

POOLING_MODES = ("mean", "cls", "max")
SETTINGS = "sentence_embedding"  # the config attribute the settings travel in (copied with the config to students)
_MODULE_TYPES = {"Transformer", "Pooling", "Dense", "Normalize"}
_MODEL_ARGUMENTS = ("num_labels", "id2label", "label2id", "problem_type")  # a task head's: an embedder has none


@dataclass
class EmbeddingOutput:
    logits: torch.Tensor  # the sentence embeddings (batch, dim)
    hidden_states: tuple[torch.Tensor, ...] | None = None
    last_hidden_state: torch.Tensor | None = None


def embedding_dimension(config: PretrainedConfig) -> int:
    """The width of the embeddings a model of this config gives: its Dense module's output, else its hidden size."""
    dense = (getattr(config, SETTINGS, None) or {}).get("dense")
    return dense[1] if dense else config.hidden_size


def pool(tokens: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """One vector a sentence from its token vectors, padding excluded (as sentence-transformers' Pooling)."""
    if mode == "cls":
        return tokens[:, 0]
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    if mode == "max":
        return tokens.masked_fill(weights == 0, torch.finfo(tokens.dtype).min).max(dim=1).values
    return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


class SentenceEncoder(nn.Module):
    """The encoder (`auto_model`, as sentence-transformers names it), its pooling, an optional Dense projection
    and an optional normalisation; `config.sentence_embedding` says which, so a student built from a copy of
    the teacher's config embeds as the teacher does."""

    def __init__(self, config: PretrainedConfig):
        super().__init__()
        settings = getattr(config, SETTINGS, None) or {}
        self.config = config
        self.pooling = settings.get("pooling", "mean")
        self.normalize = bool(settings.get("normalize", False))
        self.auto_model = AutoModel.from_config(config)
        dense = settings.get("dense")  # [in, out, bias] of a Dense module the teacher's folder has
        if dense and dense[0] != config.hidden_size:
            raise BequestError(f"the teacher's Dense module reads {dense[0]} dimensions, not {config.hidden_size}: a "
                               "sentence-embedding teacher with a Dense module is distilled in depth only (no extract, wid)")
        self.dense = nn.Linear(dense[0], dense[1], bias=dense[2]) if dense else None

    def set_dense(self, dense: nn.Linear | None) -> None:
        """Give the model a projection after pooling (or take it away); the config records its shape."""
        self.dense = dense
        settings = dict(getattr(self.config, SETTINGS, None) or {})
        settings["dense"] = [dense.in_features, dense.out_features, dense.bias is not None] if dense is not None else None
        setattr(self.config, SETTINGS, settings)

    def get_input_embeddings(self) -> nn.Module:
        return self.auto_model.get_input_embeddings()

    def narrowed(self, kept: list[int], width: int) -> None:
        """Cut out of a `width`-wide model at hidden channels `kept` (ETD, WID): with `match_teacher_dim` a Dense
        module puts each kept channel back where the teacher has it, so the embeddings start in the teacher's
        space (the kept part of its vectors, zeros elsewhere) and can be trained to match them."""
        settings = getattr(self.config, SETTINGS, None) or {}
        if settings.get("match_teacher_dim", True) and self.dense is None:
            scatter = nn.Linear(len(kept), width, bias=False)
            with torch.no_grad():
                scatter.weight.zero_()
                scatter.weight[kept, torch.arange(len(kept))] = 1.0
            self.set_dense(scatter)

    def forward(self, input_ids=None, attention_mask=None, output_hidden_states: bool = False, **inputs) -> EmbeddingOutput:
        output = self.auto_model(input_ids=input_ids, attention_mask=attention_mask,
                                 output_hidden_states=output_hidden_states, **inputs)
        embedding = pool(output.last_hidden_state, attention_mask, self.pooling)
        if self.dense is not None:
            embedding = self.dense(embedding)
        if self.normalize:
            embedding = nn.functional.normalize(embedding, p=2, dim=-1)
        return EmbeddingOutput(embedding, output.hidden_states if output_hidden_states else None, output.last_hidden_state)

    @classmethod
    def from_pretrained(cls, folder, pooling: str | None = None, normalize: bool | None = None,
                        max_length: int | None = None, match_teacher_dim: bool = True,
                        output_loading_info: bool = False, **kwargs):
        """A sentence-transformers folder (its modules read from JSON; `pooling` / `normalize` must agree with
        them) or a plain encoder folder (pooling default mean, no normalisation). `max_length` and
        `match_teacher_dim` travel to the students built from its config (the export's max_seq_length; whether
        a narrower student keeps its projection to this model's width)."""
        for name in _MODEL_ARGUMENTS:
            kwargs.pop(name, None)
        source = str(folder)
        folder = Path(folder) if Path(folder).is_dir() else hub_modules(source)
        modules = read_modules(folder)
        found = modules_settings(folder, modules) if modules else {}
        for key, asked in (("pooling", pooling), ("normalize", normalize)):
            if modules and asked is not None and found[key] != asked:
                raise BequestError(f"embedding.{key}: {folder} is a sentence-transformers model with {key} "
                                   f"{found[key]}, not {asked}: drop embedding.{key} to use its own")
        settings = {"pooling": pooling or "mean", "normalize": bool(normalize), "dense": None, **found,
                    "max_length": max_length, "match_teacher_dim": match_teacher_dim}
        dense_path = settings.pop("dense_path", None)
        encoder, info = AutoModel.from_pretrained(source, output_loading_info=True, **kwargs)
        setattr(encoder.config, SETTINGS, settings)
        model = cls.__new__(cls)  # the encoder as loaded, not a fresh one of its config
        nn.Module.__init__(model)
        model.config, model.auto_model = encoder.config, encoder
        model.pooling, model.normalize = settings["pooling"], settings["normalize"]
        model.dense = _read_dense(folder / dense_path, settings["dense"]) if dense_path else None
        return (model, info) if output_loading_info else model

    def save_pretrained(self, folder, **kwargs) -> None:
        """A sentence-transformers folder written by sentence-transformers' modules: the encoder at the top (an
        ordinary transformers folder too), then Pooling, Dense when kept, Normalize. The tokenizer must be in
        `folder` already: sentence-transformers reads it back with the encoder."""
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.models import Dense, Normalize, Pooling, Transformer

        folder = Path(folder)
        settings = getattr(self.config, SETTINGS)
        delattr(self.config, SETTINGS)  # config.json stays a plain encoder's
        try:
            self.auto_model.save_pretrained(folder, **kwargs)
        finally:
            setattr(self.config, SETTINGS, settings)
        transformer = Transformer(str(folder), max_seq_length=settings.get("max_length"))
        modules = [transformer, Pooling(self.config.hidden_size, pooling_mode=self.pooling)]
        if self.dense is not None:
            modules.append(Dense(self.dense.in_features, self.dense.out_features, bias=self.dense.bias is not None,
                                 activation_function=nn.Identity(), init_weight=self.dense.weight.detach().cpu(),
                                 init_bias=self.dense.bias.detach().cpu() if self.dense.bias is not None else None))
        if self.normalize:
            modules.append(Normalize())
        SentenceTransformer(modules=modules, device="cpu").save(str(folder))


def hub_modules(repo_id: str) -> Path:
    """A local copy of a hub model's sentence-transformers module files (modules.json, each module's config and
    weights; not the encoder, which transformers loads itself): a folder without modules.json is a plain encoder."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=["modules.json", "*/config.json", "*/model.safetensors"]))
    except Exception as error:  # offline, unknown id, no access: one line either way
        reason = (str(error).splitlines() or [""])[0][:200]
        raise BequestError(f"cannot read the sentence-transformers modules of {repo_id} from the hub "
                           f"({type(error).__name__}: {reason}): check the id and the network, or give a local folder") from None


def read_modules(folder: Path) -> list[dict] | None:
    """A sentence-transformers folder's module list (modules.json), or None for a plain encoder folder."""
    path = folder / "modules.json"
    if not path.is_file():
        return None
    try:
        modules = json.loads(path.read_text())
        types = [module["type"].rsplit(".", 1)[-1] for module in modules]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise BequestError(f"{path} is not a sentence-transformers module list: fix or remove it") from None
    unknown = [name for name in types if name not in _MODULE_TYPES]
    if unknown:
        raise BequestError(f"{path} names module {unknown[0]}, which bequest does not read (it reads "
                           f"{', '.join(sorted(_MODULE_TYPES))}): distil a model of those modules")
    return [{**module, "kind": kind} for module, kind in zip(modules, types)]


def modules_settings(folder: Path, modules: list[dict]) -> dict:
    """Pooling, Dense and Normalize as the folder's module configs give them."""
    kinds = [module["kind"] for module in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or kinds.count("Dense") > 1:
        raise BequestError(f"{folder / 'modules.json'} lists {', '.join(kinds)}: bequest reads Transformer, Pooling, "
                           "then at most one Dense and a Normalize")
    by_kind = {module["kind"]: module for module in modules}
    pooling = _read_json(folder / by_kind["Pooling"]["path"] / "config.json")
    mode = pooling.get("pooling_mode")
    if mode is None:  # the older format: one boolean per mode
        mode = [name for name in POOLING_MODES if pooling.get(f"pooling_mode_{name}_token" if name == "cls" else
                                                                f"pooling_mode_{name}_tokens")]
        mode = mode[0] if len(mode) == 1 else mode
    if mode not in POOLING_MODES:
        raise BequestError(f"{folder / by_kind['Pooling']['path']}: pooling {mode} is not one bequest computes "
                           f"({', '.join(POOLING_MODES)})")
    settings = {"pooling": mode, "normalize": "Normalize" in by_kind, "dense": None}
    if "Dense" in by_kind:
        dense = _read_json(folder / by_kind["Dense"]["path"] / "config.json")
        activation = dense.get("activation_function", "torch.nn.modules.activation.Tanh")
        if not activation.endswith(".Identity"):
            raise BequestError(f"{folder / by_kind['Dense']['path']}: a Dense module with {activation} is not read by "
                               "bequest (only an identity activation)")
        settings["dense"] = [dense["in_features"], dense["out_features"], dense.get("bias", True)]
        settings["dense_path"] = by_kind["Dense"]["path"]
    return settings


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise BequestError(f"cannot read {path} ({type(error).__name__}): the sentence-transformers folder is "
                           "incomplete; copy or download it again") from None


def _read_dense(folder: Path, shape: list) -> nn.Linear:
    path = folder / "model.safetensors"
    if not path.is_file():
        raise BequestError(f"{folder} has no model.safetensors (bequest reads safetensors only): save the model "
                           "again with safe_serialization=True")
    state = load_file(str(path))
    dense = nn.Linear(shape[0], shape[1], bias=shape[2])
    dense.load_state_dict({key.removeprefix("linear."): value for key, value in state.items()})
    return dense
