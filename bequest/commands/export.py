"""`bequest export MODEL_DIR --format onnx ...`: write an exported folder's model in more formats, each scored on
the data the folder was scored on and timed beside the folder's own PyTorch model."""

from __future__ import annotations

from pathlib import Path

from bequest.commands.evaluate import scoring
from bequest.deploy import FORMATS
from bequest.deploy.measure import deployment_table
from bequest.errors import BequestError
from bequest.export import add_measurements
from bequest.results_table import print_deployment


def export_formats(model_dir, formats: list[str], data_dir: str | None = None, overwrite: bool = False,
                   threads: int | None = None, repeats: int = 20, batch_size: int = 32) -> dict:
    """Write, score and time `formats` of the folder; returns the deployment table (also in its card and record)."""
    model_dir = Path(model_dir)
    formats = ["pytorch", *dict.fromkeys(name for name in formats if name != "pytorch")]
    for name in formats:
        FORMATS[name]  # an unknown name is one line, naming the known ones
    present = [FORMATS[name].implementation.folder(model_dir) for name in formats[1:]]
    present = [path for path in present if path.exists()]
    if present and not overwrite:
        raise BequestError(f"{present[0]} already exists: pass --overwrite to replace it")
    setup = scoring(model_dir, None, data_dir, None, None)

    def score(runner) -> dict:
        scores = {"dev": setup.scores(runner)}
        if setup.loaded.test is not None:
            scores["test"] = setup.scores(runner, "test")
        return scores

    data = next(iter(setup.loaded.dev.values()))
    deploy = deployment_table({model_dir.name: (setup.model, model_dir)}, formats, data, score, {},
                              setup.tokenizer.pad_token_id, batch_size, repeats, threads)
    add_measurements(model_dir, setup.task.main_metric, deploy=deploy)
    print_deployment(deploy, setup.task.main_metric)
    return deploy
