"""The nine GLUE tasks: one place that says how each is labelled and scored."""

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

    @property
    def is_regression(self) -> bool:
        """STS-B predicts a score, so it has no label names."""
        return not self.label_names

    @property
    def num_labels(self) -> int:
        """Width of the model's output layer: one unit for a regression score."""
        return 1 if self.is_regression else len(self.label_names)


_BINARY = ("0", "1")
_NLI = ("entailment", "not_entailment")

TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("cola", "CoLA", "cola", _BINARY, ("matthews_correlation",), "matthews_correlation", ("dev",)),
        TaskSpec("sst2", "SST-2", "sst2", _BINARY, ("accuracy",), "accuracy", ("dev",)),
        TaskSpec("mrpc", "MRPC", "mrpc", _BINARY, ("f1", "accuracy"), "f1", ("dev",)),
        TaskSpec("stsb", "STS-B", "stsb", (), ("pearson", "spearmanr"), "pearson", ("dev",)),
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


def normalize_task_name(name: str) -> str:
    """Fold the spellings people use ("SST-2", "sst_2", "STS-B") onto the canonical key."""
    return name.strip().lower().replace("-", "").replace("_", "")


def get_task(name: str) -> TaskSpec:
    """Look a task up by any common spelling, so users can type the GLUE folder name or the hub name."""
    spec = TASKS.get(normalize_task_name(name))
    if spec is None:
        known = ", ".join(TASKS)
        raise BequestError(f"unknown GLUE task {name!r}: use one of {known}")
    return spec
