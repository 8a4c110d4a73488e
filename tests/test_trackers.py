"""runtime.trackers: every evaluation of a run also goes to TensorBoard, the same numbers as its logs."""

import json

import pytest
from conftest import tiny_recipe
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bequest.config import load_config
from bequest.errors import BequestError
from bequest.pipeline import run_recipe


def test_tensorboard_receives_the_logged_scores(tmp_path, tiny_teacher, tiny_glue):
    config = load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue), [("runtime.trackers", ["tensorboard"])])
    run_recipe(config)
    events = list((tmp_path / "run" / "trackers").rglob("events.out.tfevents.*"))
    assert events
    board = EventAccumulator(str(events[0].parent)).Reload()
    history = json.loads((tmp_path / "run" / "logs" / "student.json").read_text())
    logged = board.Scalars("training_student/accuracy")
    assert [e.step for e in logged] == [h["step"] for h in history]
    assert [e.value for e in logged] == pytest.approx([h["accuracy"] for h in history])
    teacher = json.loads((tmp_path / "run" / "logs" / "teacher.json").read_text())
    assert board.Scalars("fine-tuning_teacher_on_sst2/train_loss")[-1].value == pytest.approx(teacher[-1]["train_loss"])


def test_a_tracker_without_its_package_is_refused(tmp_path, tiny_teacher, tiny_glue, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    config = load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue), [("runtime.trackers", ["mlflow"])])
    with pytest.raises(BequestError, match="pip install mlflow"):
        run_recipe(config)
    assert not (tmp_path / "run").exists()
