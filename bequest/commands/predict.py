"""`bequest predict MODEL_DIR --input FILE`: what an exported model (in any format written) says of new texts.

The input is a text file (a text a line) or a table (csv, tsv, jsonl, json, parquet) with the columns the
model's task kind reads (`text` and optional `text_pair`; `question` and `context` for QA; words separated by
spaces in `text` for tagging), or the columns `--columns` names in that order. Each output line is a JSON
object: the input's columns, then the prediction (label and score, labels, score, entities, answer or
embedding), in input order.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from bequest.data.tasks import get_task
from bequest.data.user_files import read_table
from bequest.data_config import QAConfig
from bequest.deploy import FORMATS
from bequest.deploy.latency import fixed_threads
from bequest.errors import BequestError
from bequest.eval.predict import predict
from bequest.export import read_record
from bequest.io import write_text
from bequest.models.loading import load_config, load_task_model, load_tokenizer

TEXT_SUFFIXES = (".txt",)


def model_task(model_dir: Path, record: dict, config):
    """The task of an exported folder, with its classes as the model's config names them."""
    if not record.get("task"):
        raise BequestError(f"{model_dir} records no task (no bequest.json): predict takes a folder bequest exported")
    task = get_task(record["task"])
    kind = record.get("task_kind") or ("multi_label" if config.problem_type == "multi_label_classification" else task.kind_name)
    names = tuple(config.id2label[i] for i in range(len(config.id2label))) if task.from_data and kind != "regression" else task.label_names
    return replace(task, kind_name=kind, label_names=names if kind not in ("regression", "sentence_embedding") else ())


def read_inputs(path: Path, wanted: tuple[str, ...], named: list[str] | None) -> tuple[dict[str, list], list[str]]:
    """The input columns (kind's name -> values) and the names they had in the file."""
    if not path.is_file():
        raise BequestError(f"--input {path} not found: give a text file (a text a line) or a csv/tsv/jsonl/json/parquet table")
    if named and len(named) > len(wanted):
        raise BequestError(f"--columns names {len(named)} columns; this model reads at most {len(wanted)} ({', '.join(wanted)})")
    if path.suffix.lower() in TEXT_SUFFIXES:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(wanted) > 1 and wanted[1] == "context":
            raise BequestError("this model answers questions on contexts: give a table with question and context columns")
        if not lines:
            raise BequestError(f"--input {path} holds no text")
        return {wanted[0]: lines}, [wanted[0]]
    table = read_table(str(path), "train", None, "input")
    names = named or [name for name in wanted if name in table.column_names]
    required = wanted[:2] if wanted[1:2] == ("context",) else wanted[:1]
    columns = dict(zip(wanted, named)) if named else {name: name for name in names}
    for key in required:
        name = columns.get(key, key)
        if name not in table.column_names:
            raise BequestError(f"--input {path} has no column {name!r} (the {key} this model reads); its columns are "
                               f"{', '.join(table.column_names)}: name them with --column, in the order "
                               f"{', '.join(wanted)}")
    return {kind: [str(v) if v is not None else "" for v in table[name]] for kind, name in columns.items()}, list(columns.values())


def predict_file(model_dir, input_path, output: Path | None, fmt: str = "pytorch", batch_size: int = 32,
                 max_length: int | None = None, threads: int | None = None, columns: list[str] | None = None,
                 overwrite: bool = False) -> list[dict]:
    model_dir, input_path = Path(model_dir), Path(input_path)
    if output is not None and output.exists() and not overwrite:
        raise BequestError(f"{output} already exists: pass --overwrite to replace it, or --output to write elsewhere")
    record, config = read_record(model_dir) or {}, load_config(str(model_dir))
    task = model_task(model_dir, record, config)
    kind, qa = task.kind, QAConfig(**record.get("qa", {}))
    export_format = FORMATS[fmt].implementation
    artifact = export_format.folder(model_dir)
    if not artifact.exists():
        raise BequestError(f"{model_dir} has no {fmt} artifact ({artifact}): write it with bequest export {model_dir} "
                           f"--format {fmt}")
    inputs, names = read_inputs(input_path, kind.input_columns, columns)
    tokenizer = load_tokenizer(str(model_dir), config)
    data = kind.prediction_inputs(task, inputs, tokenizer, max_length or record.get("max_length", 128), qa)
    model, _ = load_task_model(str(model_dir), task)
    with fixed_threads(threads) as count:
        runner = export_format.load(artifact, model.eval(), count)
        logits = predict(runner, data, batch_size, tokenizer.pad_token_id, desc=f"predicting ({fmt})")
    rows = [{**{name: inputs[key][i] for key, name in zip(inputs, names)}, **prediction}
            for i, prediction in enumerate(kind.decode(task, data, logits, list(task.label_names), qa))]
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if output is None:
        sys.stdout.write(text)
    else:
        write_text(output, text)
        print(f"{len(rows)} predictions written to {output}", file=sys.stderr)
    return rows
