"""The tasks: the nine GLUE tasks and SQuAD v1.1/v2.0; one place that says how each is labelled and scored."""

from __future__ import annotations

from dataclasses import dataclass

from bequest.errors import BequestError


@dataclass(frozen=True)
class TaskSpec:
    """What the loader, the model head and the metrics need to agree on for one GLUE task."""

    name: str
    glue_dir: str
    hub_name: str
    label_names: tuple[str, ...]
    metrics: tuple[str, ...]
    main_metric: str
    dev_splits: tuple[str, ...]
    kind_name: str = "classification"  # an entry of bequest.kinds.TASK_KINDS: data, head, losses, metrics
    unanswerable: bool = False  # extractive QA with questions whose answer is not in the context (SQuAD v2.0)

    @property
    def from_data(self) -> bool:
        """A generic task (text-classification, text-regression): its classes come from the user's files."""
        return not self.glue_dir

    @property
    def question_answering(self) -> bool:
        """Extractive QA: start/end logits over the tokens, not classes."""
        return self.kind_name == "extractive_qa"

    @property
    def is_regression(self) -> bool:
        """STS-B predicts a score, so it has no label names."""
        return self.kind_name == "regression"

    @property
    def multi_label(self) -> bool:
        """Any number of labels per example (sigmoid per label), not one class."""
        return self.kind_name == "multi_label"

    @property
    def num_labels(self) -> int:
        """Width of the model's output layer: one unit for a regression score, start and end for QA."""
        if self.question_answering:
            return 2
        return 1 if self.is_regression else len(self.label_names)

    @property
    def kind(self):
        """The task kind (`bequest.kinds`): data, head, losses, metrics. Imported on first use, so naming a
        task never loads torch."""
        from bequest.kinds import TASK_KINDS

        return TASK_KINDS[self.kind_name].implementation

    def label_maps(self) -> dict:
        """Class names (and, for several labels a row, the problem type) for the config of a task model; QA heads have none (start and end are not classes)."""
        if self.question_answering:
            return {}
        names = self.label_names or ("score",)
        maps = {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}
        if self.multi_label:  # transformers' pipeline then applies a sigmoid per label, not a softmax
            maps["problem_type"] = "multi_label_classification"
        return maps



_BINARY = ("0", "1")
_NLI = ("entailment", "not_entailment")

TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("cola", "CoLA", "cola", _BINARY, ("matthews_correlation",), "matthews_correlation", ("dev",)),
        TaskSpec("sst2", "SST-2", "sst2", _BINARY, ("accuracy",), "accuracy", ("dev",)),
        TaskSpec("mrpc", "MRPC", "mrpc", _BINARY, ("f1", "accuracy"), "f1", ("dev",)),
        TaskSpec("stsb", "STS-B", "stsb", (), ("pearson", "spearmanr"), "pearson", ("dev",), "regression"),
        TaskSpec("qqp", "QQP", "qqp", _BINARY, ("f1", "accuracy"), "f1", ("dev",)),
        # Same order as the hub's ClassLabel, so a model trained on either source means the same thing.
        TaskSpec(
            "mnli",
            "MNLI",
            "mnli",
            ("entailment", "neutral", "contradiction"),
            ("accuracy",),
            "accuracy",
            ("dev_matched", "dev_mismatched"),
        ),
        TaskSpec("qnli", "QNLI", "qnli", _NLI, ("accuracy",), "accuracy", ("dev",)),
        TaskSpec("rte", "RTE", "rte", _NLI, ("accuracy",), "accuracy", ("dev",)),
        TaskSpec("wnli", "WNLI", "wnli", _BINARY, ("accuracy",), "accuracy", ("dev",)),
    )
}


# Generic tasks on the user's own files (data.train, data.validation, the column keys): their classes
# and metrics are filled in from the training labels (`bequest.data.user_files.user_task`).
GENERIC_TASKS: dict[str, TaskSpec] = {
    "textclassification": TaskSpec("text-classification", "", "", (), ("accuracy",), "accuracy", ("validation",)),
    "textregression": TaskSpec("text-regression", "", "", (), ("pearson", "spearmanr"), "pearson", ("validation",),
                               "regression"),
    "tokenclassification": TaskSpec("token-classification", "", "", (), ("f1",), "f1", ("validation",),
                                    "token_classification"),
    "questionanswering": TaskSpec("question-answering", "", "", (), ("exact_match", "f1"), "f1", ("validation",),
                                  "extractive_qa"),
    "sentenceembedding": TaskSpec("sentence-embedding", "", "", (), ("spearman", "pearson"), "spearman", ("validation",),
                                  "sentence_embedding"),
}


# Metric names follow the official SQuAD evaluation scripts (v2.0 adds the HasAns/NoAns splits).
QA_TASKS: dict[str, TaskSpec] = {
    "squad": TaskSpec("squad", "squad", "rajpurkar/squad", (), ("exact_match", "f1"), "f1", ("dev",), "extractive_qa"),
    "squad_v2": TaskSpec("squad_v2", "squad", "rajpurkar/squad_v2", (),
                         ("exact_match", "f1", "HasAns_exact_match", "HasAns_f1", "NoAns_exact_match", "NoAns_f1"), "f1",
                         ("dev",), "extractive_qa", unanswerable=True),
}
_QA_ALIASES = {"squad": "squad", "squad1": "squad", "squadv1": "squad", "squadv11": "squad", "squad2": "squad_v2",
               "squadv2": "squad_v2", "squadv20": "squad_v2"}


def normalize_task_name(name: str) -> str:
    """Fold the spellings people use ("SST-2", "sst_2", "STS-B") onto the canonical key."""
    return name.strip().lower().replace("-", "").replace("_", "")


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add a task preset (a plugin's); `get_task` then finds it by any spelling of its name."""
    key = normalize_task_name(spec.name).replace(".", "")
    if key in TASKS or key in QA_TASKS:
        raise BequestError(f"task {spec.name!r} is registered twice: choose another name")
    TASKS[key] = spec
    return spec


def get_task(name: str) -> TaskSpec:
    """Look a task up by any common spelling, so users can type the GLUE folder name or the hub name."""
    key = normalize_task_name(name).replace(".", "")
    spec = TASKS.get(key) or QA_TASKS.get(_QA_ALIASES.get(key, "")) or GENERIC_TASKS.get(key)
    if spec is None:
        known = ", ".join([*(s.name for s in GENERIC_TASKS.values()), *TASKS, *QA_TASKS])
        raise BequestError(f"unknown task {name!r}: use one of {known}")
    return spec
