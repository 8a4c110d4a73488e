"""Token classification (NER) on CoNLL files: first-sub-word labels, KD over them, seqeval entity F1."""

import json

import numpy as np
import pytest
from conftest import tiny_recipe

from bequest.config import load_config
from bequest.data.conll import read_conll
from bequest.errors import BequestError
from bequest.kinds.token_classification import (
    IGNORED,
    TOKEN_CLASSIFICATION,
    encode_words,
)
from bequest.pipeline import run_recipe
from bequest.workload import workload


def _cut(shared_data, folder, split, sentences):
    """The first `sentences` sentences of a CoNLL-2003 split, as a file of their own."""
    text = (shared_data / "ner" / "conll2003" / f"{split}.txt").read_text(encoding="utf-8")
    blocks = [b for b in text.split("\n\n") if b.strip() and not b.startswith("-DOCSTART-")][:sentences]
    path = folder / f"{split}.txt"
    path.write_text("-DOCSTART- -X- -X- O\n\n" + "\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def test_conll_lines_are_read_and_a_line_of_other_width_is_one_line(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("-DOCSTART- -X- O\n\nEU NNP B-ORG\nrejects VBZ O\n\nPeter NNP B-PER\nBlackburn NNP I-PER\n")
    assert read_conll(path, "train") == ([["EU", "rejects"], ["Peter", "Blackburn"]], [["B-ORG", "O"], ["B-PER", "I-PER"]])
    path.write_text("EU NNP B-ORG\nrejects O\n")
    with pytest.raises(BequestError, match=r"a.txt line 2 has 2 column\(s\), the file's first has 3"):
        read_conll(path, "train")


def test_only_first_sub_words_carry_labels(tiny_teacher):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher)
    features = encode_words(tokenizer, [["Blackburnshire", "rejects"]], [["B-LOC", "O"]], {"B-LOC": 0, "O": 1}, 32, False)
    words = tokenizer(["Blackburnshire", "rejects"], is_split_into_words=True).word_ids()
    assert len([w for w in words if w == 0]) > 1  # the first word is several sub-words
    expected = [IGNORED if w is None or (i and words[i - 1] == w) else [0, 1][w] for i, w in enumerate(words)]
    assert features.labels == [expected]
    every = encode_words(tokenizer, [["Blackburnshire", "rejects"]], [["B-LOC", "O"]], {"B-LOC": 0, "O": 1}, 32, True)
    assert every.labels == [[IGNORED if w is None else [0, 1][w] for w in words]]


def test_entity_f1_is_seqevals_over_first_sub_words():
    from dataclasses import replace

    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2

    from bequest.data.tasks import GENERIC_TASKS

    names = ("B-PER", "I-PER", "O")
    task = replace(GENERIC_TASKS["tokenclassification"], label_names=names)
    data = type("D", (), {"labels": [[IGNORED, 0, 1, IGNORED, 2, IGNORED], [IGNORED, 0, 2, IGNORED]]})()
    logits = np.zeros((2, 6, 3))
    for row, tags in enumerate([[2, 0, 1, 0, 2, 2], [2, 2, 2, 2, 0, 0]]):  # sentence 1 right, sentence 2 misses its entity
        logits[row, np.arange(6), tags] = 1.0
    scores = TOKEN_CLASSIFICATION.metrics(task, data, logits, None)
    gold, predicted = [["B-PER", "I-PER", "O"], ["B-PER", "O"]], [["B-PER", "I-PER", "O"], ["O", "O"]]
    assert scores["f1"] == pytest.approx(f1_score(gold, predicted, mode="strict", scheme=IOB2)) == pytest.approx(2 / 3)
    assert scores["accuracy"] == pytest.approx(4 / 5)


def test_a_conll_run_distils_and_exports_a_tagger_that_a_plain_pipeline_runs(tmp_path, tiny_teacher, tiny_glue, shared_data):
    from transformers import pipeline

    data = {"train": str(_cut(shared_data, tmp_path, "train", 160)), "validation": str(_cut(shared_data, tmp_path, "dev", 48)),
            "max_length": 48}
    student = {"name": "student", "layers": 2, "init": "lower", "objectives": {"kd": {}, "hidden": {}},
               "train": {"epochs": 2, "batch_size": 16, "learning_rate": 1e-3}}
    config = load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="token-classification", data=data,
                                     students=[student]))
    assert workload(config).task.label_names == ("B-LOC", "B-MISC", "B-ORG", "B-PER", "I-LOC", "I-MISC", "I-ORG", "I-PER", "O")
    results = run_recipe(config)
    row = results["students"]["student"]
    assert set(row["dev"]) == {"f1", "precision", "recall", "accuracy"} and results["main_metric"] == "f1"
    assert 0 <= row["dev"]["f1"] <= 1 and row["dev"]["accuracy"] > 0.5  # most tokens are O
    folder = tmp_path / "run" / "student"
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["BertForTokenClassification"]
    entities = pipeline("token-classification", model=str(folder), aggregation_strategy="simple")("EU rejects German call")
    assert isinstance(entities, list)
    assert set(results["teacher"]["dev"]) == set(row["dev"])
    assert 'aggregation_strategy="simple"' in (folder / "README.md").read_text()
    from bequest.commands.evaluate import evaluate_folder

    assert evaluate_folder(folder, None, None, None, None, tmp_path / "again.json", False) == row["dev"]


def test_ptp_on_token_classification_is_refused_in_one_line(tmp_path, tiny_teacher, tiny_glue, shared_data):
    from bequest.pipeline import check_models

    data = {"train": str(_cut(shared_data, tmp_path, "train", 20))}
    student = {"name": "s", "layers": 2, "objectives": {"ptp": {}}}
    config = load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="token-classification", data=data,
                                     students=[student]))
    with pytest.raises(BequestError, match="ptp builds its classes from the teacher's class predictions"):
        check_models(config)


def test_every_initialiser_runs_on_token_classification(tmp_path, tiny_teacher, tiny_glue, shared_data):
    """ETD with Taylor scores on the tagging loss, WID merged at the end, SPS unrolled: each exports a tagger."""
    data = {"train": str(_cut(shared_data, tmp_path, "train", 96)), "validation": str(_cut(shared_data, tmp_path, "dev", 24)),
            "max_length": 48}
    train = {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3}
    students = [
        {"name": "etd", "layers": 2, "init": "lower", "extract": {"hidden_size": 16, "batches": 2, "batch_size": 8},
         "objectives": {"kd": {}}, "train": train},
        {"name": "wid", "layers": 2, "init": "lower", "wid": {"hidden_size": 16, "w_step": 1}, "objectives": {"kd": {}},
         "train": {**train, "epochs": 3}},
        {"name": "sps", "layers": 2, "init": "lower", "sps": {"mode": "paper"}, "objectives": {"kd": {}}, "train": train},
    ]
    results = run_recipe(load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="token-classification", data=data,
                                                 students=students)))
    rows = results["students"]
    assert rows["etd"]["hidden_size"] == 16 and "ETD width extraction (taylor)" in rows["etd"]["init"]
    assert rows["wid"]["hidden_size"] == 16 and rows["wid"]["wid_merge_error"] < 1e-4
    assert rows["sps"]["num_layers"] == 4 and rows["sps"]["sps_trained_parameters"] < rows["sps"]["parameters"]
    for name in rows:
        config = json.loads((tmp_path / "run" / name / "config.json").read_text())
        assert config["architectures"] == ["BertForTokenClassification"] and len(config["id2label"]) == 9
        assert set(rows[name]["dev"]) == {"f1", "precision", "recall", "accuracy"}
