"""bequest predict: an exported model's predictions on new texts, in any format written, as plain transformers,
sentence-transformers and onnxruntime give them."""

import json

import numpy as np
import pytest
import torch
from conftest import tiny_recipe

from bequest.config import load_config
from bequest.pipeline import run_recipe

STUDENT = {"name": "student", "layers": 2, "init": "lower", "train": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3}}
TEXTS = ["a charming and affecting journey", "the worst film of the year , by far", "EU rejects German call to boycott British lamb ."]


def _run(tmp_path, tiny_teacher, tiny_glue, task="sst2", data=None, formats=("pytorch",)):
    config = load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task=task, students=[STUDENT],
                                     data={"dir": str(tiny_glue), "max_length": 32, **(data or {})},
                                     export={"formats": list(formats)}, eval={"latency_repeats": 2}))
    run_recipe(config)
    return tmp_path / "run" / "student"


def _predict(cli, tmp_path, folder, *args):
    result = cli.run(["predict", str(folder), *args], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_classes_from_a_text_file_in_every_format_as_the_pipeline_gives_them(tmp_path, tiny_teacher, tiny_glue, cli):
    from transformers import pipeline

    folder = _run(tmp_path, tiny_teacher, tiny_glue, formats=("onnx", "torch-int8"))
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    rows = _predict(cli, tmp_path, folder, "--input", str(tmp_path / "in.txt"))
    expected = pipeline("text-classification", model=str(folder))(TEXTS)
    assert [r["text"] for r in rows] == TEXTS
    assert [r["label"] for r in rows] == [e["label"] for e in expected]
    assert [r["score"] for r in rows] == pytest.approx([e["score"] for e in expected], abs=1e-5)
    onnx = _predict(cli, tmp_path, folder, "--input", str(tmp_path / "in.txt"), "--format", "onnx")
    assert [r["score"] for r in onnx] == pytest.approx([r["score"] for r in rows], abs=1e-5)
    int8 = _predict(cli, tmp_path, folder, "--input", str(tmp_path / "in.txt"), "--format", "torch-int8")
    assert [r["score"] for r in int8] != [r["score"] for r in rows]  # the int8 model ran, not the fp32 one
    assert [r["score"] for r in int8] == pytest.approx([r["score"] for r in rows], abs=0.05)

    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"review": t}) + "\n" for t in TEXTS), encoding="utf-8")
    missing = cli.run(["predict", str(folder), "--input", str(tmp_path / "in.jsonl")], tmp_path)
    assert missing.returncode == 2 and "has no column 'text' (the text this model reads); its columns are review" in missing.stderr
    named = _predict(cli, tmp_path, folder, "--input", str(tmp_path / "in.jsonl"), "--column", "review",
                     "--output", str(tmp_path / "out.jsonl"))
    assert named == []  # written to the file, not printed
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["review"] for r in written] == TEXTS and [r["label"] for r in written] == [r["label"] for r in rows]
    again = cli.run(["predict", str(folder), "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "out.jsonl")], tmp_path)
    assert again.returncode == 2 and "out.jsonl already exists: pass --overwrite" in again.stderr
    absent = cli.run(["predict", str(folder), "--input", str(tmp_path / "in.txt"), "--format", "onnx-int8"], tmp_path)
    assert absent.returncode == 2 and "has no onnx-int8 artifact" in absent.stderr and "bequest export" in absent.stderr


def test_entities_are_the_pipelines_first_token_aggregation(tmp_path, tiny_teacher, tiny_glue, shared_data, cli):
    """A word's tag is its first sub-word's (as it was trained): transformers' "first" aggregation."""
    from transformers import AutoModelForTokenClassification, pipeline

    text = (shared_data / "ner" / "conll2003" / "train.txt").read_text(encoding="utf-8")
    blocks = [b for b in text.split("\n\n") if b.strip() and not b.startswith("-DOCSTART-")]
    (tmp_path / "train.txt").write_text("\n\n".join(blocks[:120]) + "\n", encoding="utf-8")
    folder = _run(tmp_path, tiny_teacher, tiny_glue, task="token-classification",
                  data={"train": str(tmp_path / "train.txt")})
    model = AutoModelForTokenClassification.from_pretrained(str(folder))
    torch.manual_seed(0)
    torch.nn.init.normal_(model.classifier.weight, std=1.0)  # a tiny tagger says O everywhere: spread its tags out
    model.save_pretrained(str(folder))
    sentences = [" ".join(line.split()[0] for line in block.splitlines()) for block in blocks[200:300]]
    # words as the pipeline cuts them (it splits "1996-08-22" at its punctuation; CoNLL words are whole)
    sentences = [s for s in sentences if all(word.isalnum() for word in s.split())][:30]
    (tmp_path / "in.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    rows = _predict(cli, tmp_path, folder, "--input", str(tmp_path / "in.txt"))
    tagger = pipeline("token-classification", model=str(folder), aggregation_strategy="first")
    found = 0
    for row, sentence in zip(rows, sentences):
        assert len(row["tags"]) == len(sentence.split())
        expected = [(e["entity_group"], e["word"].replace(" ", "")) for e in tagger(sentence)]
        ours = [(e["entity"], e["text"].replace(" ", "").lower()) for e in row["entities"]]
        assert ours == [(kind, word.lower()) for kind, word in expected], sentence
        found += len(ours)
    assert found > 0  # the comparison saw entities


def test_embeddings_are_sentence_transformers_encodings(tmp_path, tiny_teacher, tiny_glue, cli):
    from sentence_transformers import SentenceTransformer

    folder = _run(tmp_path, tiny_teacher, tiny_glue, task="sentence-embedding",
                  data={"train": str(tiny_glue / "SST-2" / "train.tsv"), "text_column": "sentence"})
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    rows = _predict(cli, tmp_path, folder, "--input", str(tmp_path / "in.txt"))
    expected = SentenceTransformer(str(folder), device="cpu").encode(TEXTS)
    assert np.abs(np.array([r["embedding"] for r in rows]) - expected).max() < 1e-5


def test_answers_are_spans_of_their_contexts_in_both_formats(tmp_path, tiny_teacher, tiny_glue, shared_data, cli):
    squad = json.loads(next((shared_data / "squad").glob("dev-v1.1*.json")).read_text())
    squad["data"] = [{**a, "paragraphs": a["paragraphs"][:2]} for a in squad["data"][:4]]
    (tmp_path / "squad").mkdir()
    (tmp_path / "squad" / "dev-v1.1.json").write_text(json.dumps(squad))
    config = load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="squad", students=[STUDENT],
                                     data={"dir": str(tmp_path / "squad"), "max_length": 64, "split_by_article": 0.5,
                                           "max_eval_examples": 10},
                                     qa={"stride": 16, "max_answer_length": 12}, export={"formats": ["onnx"]},
                                     eval={"latency_repeats": 2}))
    run_recipe(config)
    folder = tmp_path / "run" / "student"
    paragraph = squad["data"][3]["paragraphs"][1]
    questions = [{"question": q["question"], "context": paragraph["context"]} for q in paragraph["qas"][:5]]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions), encoding="utf-8")
    rows = _predict(cli, tmp_path, folder, "--input", str(tmp_path / "in.jsonl"))
    assert [r["question"] for r in rows] == [q["question"] for q in questions]
    assert all(r["answer"] and r["answer"] in paragraph["context"] and len(r["answer"].split()) <= 12 for r in rows)
    onnx = _predict(cli, tmp_path, folder, "--input", str(tmp_path / "in.jsonl"), "--format", "onnx")
    assert [r["answer"] for r in onnx] == [r["answer"] for r in rows]
    text_file = cli.run(["predict", str(folder), "--input", str(tmp_path / "in.txt")], tmp_path)
    assert text_file.returncode == 2 and "not found" in text_file.stderr


def test_scores_and_multi_label_sets_are_read_from_the_logits(tmp_path, tiny_teacher, tiny_glue):
    """The decoders against independent computations on given logits."""
    from bequest.data.tasks import get_task
    from bequest.kinds.classification import REGRESSION
    from bequest.kinds.multi_label import MULTI_LABEL

    logits = np.array([[2.0, -1.0, 0.5], [-3.0, 0.1, -0.2]])
    rows = MULTI_LABEL.decode(get_task("text-classification"), None, logits, ["a", "b", "c"], None)
    assert [r["labels"] for r in rows] == [["a", "c"], ["b"]]
    assert rows[0]["scores"]["b"] == pytest.approx(1 / (1 + np.exp(1.0)))
    assert [r["score"] for r in REGRESSION.decode(get_task("stsb"), None, np.array([[3.5], [-0.25]]), [], None)] == [3.5, -0.25]
    probabilities = torch.softmax(torch.tensor(logits), -1)
    from bequest.kinds.classification import CLASSIFICATION

    rows = CLASSIFICATION.decode(get_task("sst2"), None, logits, ["x", "y", "z"], None)
    assert [r["label"] for r in rows] == ["x", "y"] and rows[1]["score"] == pytest.approx(float(probabilities[1, 1]))
