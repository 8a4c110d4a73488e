"""Deployment formats: every artifact is written, loads in its plain runtime (onnxruntime, transformers), gives
the PyTorch model's outputs (ONNX fp32 to 1e-4), and is scored and timed as the run reports it."""

import json

import numpy as np
import pytest
import torch
from conftest import tiny_recipe

from bequest.config import load_config
from bequest.errors import BequestError

FORMATS = ["pytorch", "onnx", "onnx-int8", "torch-int8"]
STUDENT = {"name": "student", "layers": 2, "init": "lower", "train": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3}}


def _dev_sentences(glue, task="SST-2", column=0):
    lines = (glue / task / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    rows = [line.split("\t") for line in lines]
    return [row[column] for row in rows], [int(row[1]) for row in rows] if task == "SST-2" else None


def test_a_run_writes_scores_and_times_every_format_and_plain_onnxruntime_agrees(tmp_path, tiny_teacher, tiny_glue, cli):
    import onnxruntime
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    recipe = tiny_recipe(tmp_path, tiny_teacher, tiny_glue, students=[STUDENT], export={"formats": FORMATS[1:]},
                         eval={"latency_repeats": 3, "latency_threads": 1})
    result = cli.run(["run", str(recipe)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "deployment" in result.stdout and "onnx-int8" in result.stdout
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    deploy = results["deploy"]
    assert [(r["model"], r["format"]) for r in deploy["rows"]] == [(m, f) for m in ("teacher", "student") for f in FORMATS]
    assert deploy["threads"] == 1 and deploy["batch_sizes"] == [1, 32]
    rows = {(r["model"], r["format"]): r for r in deploy["rows"]}
    assert rows[("student", "pytorch")]["dev"] == results["students"]["student"]["dev"]
    assert rows[("teacher", "pytorch")]["speedup"] == {"1": 1.0, "32": 1.0}

    folder = tmp_path / "run" / "student"
    sentences, labels = _dev_sentences(tiny_glue)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    inputs = tokenizer(sentences, padding=True, truncation=True, max_length=32, return_tensors="np")
    session = onnxruntime.InferenceSession(str(folder / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(["logits"], {node.name: inputs[node.name] for node in session.get_inputs()})[0]
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        torch_logits = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits.numpy()
    assert np.abs(onnx_logits - torch_logits).max() < 1e-4
    assert rows[("student", "onnx")]["max_abs_diff"] < 1e-4
    accuracy = float((onnx_logits.argmax(-1) == np.array(labels)).mean())
    assert rows[("student", "onnx")]["dev"]["accuracy"] == pytest.approx(accuracy)  # scored as onnxruntime predicts

    int8 = onnxruntime.InferenceSession(str(folder / "onnx-int8" / "model.onnx"), providers=["CPUExecutionProvider"])
    int8_logits = int8.run(["logits"], {node.name: inputs[node.name] for node in int8.get_inputs()})[0]
    assert rows[("student", "onnx-int8")]["dev"]["accuracy"] == pytest.approx(float((int8_logits.argmax(-1) == np.array(labels)).mean()))
    assert 0 < np.abs(int8_logits - torch_logits).max() < 0.5  # int8 differs, and the table says by how much
    assert rows[("student", "onnx-int8")]["size_mb"] < rows[("student", "onnx")]["size_mb"]
    assert rows[("student", "torch-int8")]["size_mb"] < rows[("student", "pytorch")]["size_mb"]
    assert (tmp_path / "run" / "teacher" / "onnx-int8" / "model.onnx").is_file()

    card = (folder / "README.md").read_text()
    assert "## Speed" in card and "| student | onnx-int8 |" in card and "x faster" in card
    assert json.loads((folder / "bequest.json").read_text())["deploy"]["rows"] == deploy["rows"]
    from huggingface_hub import ModelCard

    data = ModelCard.load(folder / "README.md").data  # the hub's own reader: a model-index of the scores
    assert {(r.dataset_split, r.metric_type): r.metric_value for r in data.eval_results} == {
        ("validation", name): value for name, value in results["students"]["student"]["dev"].items()}
    assert data.base_model is None  # the teacher is a local folder, not a hub id
    from bequest.io import check_manifest

    check_manifest(folder)  # the card and the artifacts added after export are in the folder's manifest


def test_the_torch_int8_artifact_is_what_runs(tmp_path, tiny_teacher):
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForSequenceClassification

    from bequest.deploy.torch_int8 import TorchInt8Format, quantized

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_teacher), num_labels=2).eval()
    inputs = {"input_ids": torch.tensor([[2, 7, 9, 4, 3], [2, 5, 3, 0, 0]]), "attention_mask": torch.tensor([[1] * 5, [1, 1, 1, 0, 0]])}
    fmt = TorchInt8Format()
    fmt.write(model, inputs, tmp_path)
    with torch.no_grad():
        loaded, direct = fmt.load(tmp_path, model, 1)(**inputs).logits, quantized(model)(**inputs).logits
        assert torch.equal(loaded, direct) and not torch.equal(loaded, model(**inputs).logits)
        stored = load_file(str(tmp_path / "model.safetensors"))
        name = next(k for k in stored if k.endswith("weight_int8"))
        stored[name] = torch.zeros_like(stored[name])
        save_file(stored, str(tmp_path / "model.safetensors"))
        assert not torch.equal(fmt.load(tmp_path, model, 1)(**inputs).logits, loaded)


def test_onnx_int8_scales_each_output_channel_and_its_sessions_do_not_spin(tmp_path, tiny_teacher):
    import onnx
    from transformers import AutoModelForSequenceClassification

    from bequest.deploy.onnx import OnnxInt8Format, OnnxInt8PerTensorFormat

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_teacher), num_labels=2).eval()
    inputs = {"input_ids": torch.tensor([[2, 7, 9, 4, 3], [2, 5, 3, 0, 0]]), "attention_mask": torch.tensor([[1] * 5, [1, 1, 1, 0, 0]])}
    scales = {}
    for fmt in (OnnxInt8Format(), OnnxInt8PerTensorFormat()):
        (tmp_path / str(fmt.per_channel)).mkdir()
        fmt.write(model, inputs, tmp_path / str(fmt.per_channel))
        graph = onnx.load(str(tmp_path / str(fmt.per_channel) / "model.onnx")).graph
        weights = {name.removesuffix("_quantized") for node in graph.node if node.op_type == "MatMulInteger"
                   for name in node.input if name.endswith("_quantized")}
        scales[fmt.per_channel] = [list(i.dims) for i in graph.initializer if i.name.removesuffix("_scale") in weights]
    assert scales[True] and all(dims and dims[0] > 1 for dims in scales[True])
    assert scales[False] and all(not dims or dims == [1] for dims in scales[False])
    session = OnnxInt8Format().load(tmp_path / "True", model, 1).session
    assert session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_an_unknown_format_and_formats_on_a_corpus_are_one_line(tmp_path, tiny_teacher, tiny_glue):
    with pytest.raises(BequestError, match=r"export.formats: unknown export format 'tflite': use one of onnx, onnx-int8, onnx-int8-tensor, pytorch, torch-int8"):
        load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, export={"formats": ["tflite"]}))
    with pytest.raises(BequestError, match=r"export.formats: a task-agnostic student is fine-tuned"):
        load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task=None, corpus={"files": [str(tmp_path)]},
                                students=[{"name": "s", "layers": 2, "objectives": {"hidden": {}}}],
                                export={"formats": ["onnx"]}))



def _conll(shared_data, folder, split, sentences):
    text = (shared_data / "ner" / "conll2003" / f"{split}.txt").read_text(encoding="utf-8")
    blocks = [b for b in text.split("\n\n") if b.strip() and not b.startswith("-DOCSTART-")][:sentences]
    path = folder / f"{split}.txt"
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return str(path)


def _squad(shared_data, folder):
    data = json.loads(next((shared_data / "squad").glob("dev-v1.1*.json")).read_text())
    data["data"] = [{**article, "paragraphs": article["paragraphs"][:2]} for article in data["data"][:4]]
    (folder / "dev-v1.1.json").write_text(json.dumps(data))
    return str(folder)


@pytest.mark.parametrize("task", ["stsb", "token-classification", "squad", "sentence-embedding"])
def test_every_task_kind_exports_onnx_that_gives_its_pytorch_outputs_and_scores(tmp_path, tiny_teacher, tiny_glue,
                                                                                 shared_data, task):
    from bequest.pipeline import run_recipe

    data = {"dir": str(tiny_glue), "max_length": 32}
    if task == "token-classification":
        data.update(train=_conll(shared_data, tmp_path, "train", 60), validation=_conll(shared_data, tmp_path, "dev", 24))
    elif task == "squad":
        data.update(dir=_squad(shared_data, tmp_path), max_length=64, split_by_article=0.5, max_eval_examples=10)
    elif task == "sentence-embedding":
        data.update(train=str(tiny_glue / "SST-2" / "train.tsv"), text_column="sentence")
    qa = {"stride": 16, "max_answer_length": 12} if task == "squad" else None
    results = run_recipe(load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task=task, data=data, qa=qa,
                                                 students=[STUDENT], export={"formats": ["onnx"]},
                                                 eval={"latency_repeats": 2})))
    rows = {(r["model"], r["format"]): r for r in results["deploy"]["rows"]}
    for model in ("teacher", "student"):
        onnx, pytorch = rows[(model, "onnx")], rows[(model, "pytorch")]
        assert onnx["max_abs_diff"] < 1e-4, (model, onnx["max_abs_diff"])
        main = results["main_metric"]
        assert onnx["dev"][main] == pytest.approx(pytorch["dev"][main], abs=1e-3), model
        assert (tmp_path / "run" / ("teacher" if model == "teacher" else "student") / "onnx" / "model.onnx").is_file()


def test_bequest_export_adds_formats_to_an_exported_folder_and_keeps_what_exists(tmp_path, tiny_teacher, tiny_glue, cli):
    recipe = tiny_recipe(tmp_path, tiny_teacher, tiny_glue, students=[STUDENT], eval={"latency_repeats": 2})
    assert cli.run(["run", str(recipe)], tmp_path).returncode == 0
    folder = tmp_path / "run" / "student"
    assert "deploy" not in json.loads((folder / "bequest.json").read_text())
    glue = ["--data-dir", str(tiny_glue)]
    result = cli.run(["export", str(folder), "--format", "onnx-int8", "--repeats", "2", *glue], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "onnx-int8" in result.stdout and "torchvision" not in result.stderr
    deploy = json.loads((folder / "bequest.json").read_text())["deploy"]
    assert [(r["model"], r["format"]) for r in deploy["rows"]] == [("student", "pytorch"), ("student", "onnx-int8")]
    assert deploy["rows"][0]["dev"] == json.loads((folder / "bequest.json").read_text())["dev"]  # scored as at export
    written = (folder / "onnx-int8" / "model.onnx").read_bytes()
    again = cli.run(["export", str(folder), "--format", "onnx-int8", *glue], tmp_path)
    assert again.returncode == 2 and again.stderr.strip().endswith("onnx-int8 already exists: pass --overwrite to replace it")
    assert (folder / "onnx-int8" / "model.onnx").read_bytes() == written
    assert cli.run(["export", str(folder), "--format", "onnx", "--repeats", "2", "--overwrite", *glue], tmp_path).returncode == 0
    card = (folder / "README.md").read_text()
    assert card.count("## Speed") == 1 and "x faster" in card and "| student | onnx |" in card and "| student | onnx-int8 |" not in card
    unknown = cli.run(["export", str(folder), "--format", "tflite"], tmp_path)
    assert unknown.returncode == 2 and "unknown export format 'tflite'" in unknown.stderr


def test_push_to_hub_uploads_every_student_folder_and_an_unreachable_hub_is_one_line(tmp_path, tiny_teacher, tiny_glue,
                                                                                      monkeypatch, capsys):
    from huggingface_hub import HfApi
    from typer.testing import CliRunner

    from bequest.cli import app

    calls = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create", repo_id, kw)))
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.append(("upload", kw["repo_id"], kw))
                        or type("Commit", (), {"commit_url": f"https://hf.co/{kw['repo_id']}/commit/1"})())
    students = [STUDENT, {**STUDENT, "name": "other"}]
    recipe = tiny_recipe(tmp_path, tiny_teacher, tiny_glue, students=students, eval={"latency_repeats": 2})
    result = CliRunner().invoke(app, ["run", str(recipe), "--push-to-hub", "me/tiny", "--private"])
    assert result.exit_code == 0, result.output
    uploads = {repo: kw["folder_path"] for kind, repo, kw in calls if kind == "upload"}
    assert uploads == {"me/tiny-student": str(tmp_path / "run" / "student"), "me/tiny-other": str(tmp_path / "run" / "other")}
    assert all(kw["private"] and kw["exist_ok"] for kind, _, kw in calls if kind == "create")
    assert "student: pushed to https://hf.co/me/tiny-student/commit/1" in result.output

    def offline(self, repo_id, **kw):
        raise ConnectionError("no network")

    monkeypatch.setattr(HfApi, "create_repo", offline)
    from bequest.hub import push_folder

    with pytest.raises(BequestError, match=r"cannot push .* to the hub as me/tiny \(ConnectionError: no network\): check"):
        push_folder(tmp_path / "run" / "student", "me/tiny")
    bad = CliRunner().invoke(app, ["run", str(recipe), "--push-to-hub", "no such/repo!"])
    assert bad.exit_code == 2 and "not a hub repo id" in bad.output
