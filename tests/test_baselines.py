"""Baselines beside every model (the majority class, the mean score), the weak-teacher warning, and
teacher fine-tuning that runs at least `min_steps` on small data."""


import numpy as np
import pytest
from sklearn.metrics import f1_score, matthews_corrcoef

from bequest.config import TeacherFinetuneConfig, TrainConfig
from bequest.data.tasks import get_task
from bequest.kinds import baseline
from bequest.pipeline import weak_teacher


class _Split:
    def __init__(self, labels):
        self.labels = list(labels)

    def __len__(self):
        return len(self.labels)


def test_the_majority_class_is_scored_with_the_tasks_own_metrics():
    mrpc, cola = get_task("mrpc"), get_task("cola")
    train, dev = _Split([1, 1, 0, 1, 0]), _Split([0, 1, 1, 0, 0, 1, 1])
    scores = baseline(mrpc, train, {mrpc.dev_splits[0]: dev})
    always_one = np.ones(len(dev), dtype=int)
    assert scores["accuracy"] == pytest.approx(4 / 7)
    assert scores["f1"] == pytest.approx(f1_score(dev.labels, always_one))
    minority = baseline(cola, _Split([0, 0, 1]), {cola.dev_splits[0]: dev})  # always 0: no correlation
    assert minority["matthews_correlation"] == pytest.approx(matthews_corrcoef(dev.labels, np.zeros(7, dtype=int)))


def test_a_constant_score_correlates_with_nothing():
    stsb = get_task("stsb")
    assert baseline(stsb, _Split([1.0, 4.5]), {stsb.dev_splits[0]: _Split([0.0, 2.0, 5.0])}) == {
        "pearson": 0.0, "spearmanr": 0.0}


@pytest.mark.parametrize(("teacher", "warned"), [(0.07, True), (0.515, True), (0.519, True), (0.521, False), (0.9, False)])
def test_a_teacher_not_two_points_above_its_baseline_is_named_with_the_knobs(teacher, warned):
    lines = weak_teacher({"dev": {"accuracy": teacher}}, {"majority class": {"dev": {"accuracy": 0.5}}}, "accuracy")
    assert bool(lines) is warned
    if warned:
        assert "majority class" in lines[0] and "teacher.finetune.min_steps" in lines[0] and f"{teacher:.4f}" in lines[0]


@pytest.mark.parametrize(("epochs", "min_steps", "per_epoch", "expected"),
                         [(2, 500, 250, 2), (2, 500, 115, 5), (2, 500, 20, 25), (3, None, 7, 3), (6, 10, 5, 6)])
def test_min_steps_adds_whole_epochs_only_to_small_data(epochs, min_steps, per_epoch, expected):
    assert TrainConfig(epochs=epochs, min_steps=min_steps).planned_epochs(per_epoch) == expected
    assert TeacherFinetuneConfig().min_steps == 500 and TrainConfig().min_steps is None
