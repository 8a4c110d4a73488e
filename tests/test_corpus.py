"""Task-agnostic distillation: corpus segmentation and caching, a general student, then a task run from it."""

import json

import numpy as np
import pytest
import torch
from conftest import tiny_recipe
from transformers import AutoModel

from bequest.config import CorpusConfig, load_config
from bequest.data.corpus import load_segments, split_segments
from bequest.errors import BequestError
from bequest.models.loading import load_config as load_model_config
from bequest.models.loading import load_tokenizer
from bequest.pipeline import run_recipe

TEXT = "The cat sat on the mat. It was warm.\nThe dog barked.\n\nA second document begins here and goes on for a while longer than the first one did.\n\nshort\n"


@pytest.fixture(scope="module")
def tokenizer(tiny_teacher):
    return load_tokenizer(str(tiny_teacher), load_model_config(str(tiny_teacher)))


def test_documents_become_full_segments_that_never_cross_a_document(tokenizer, tmp_path):
    (tmp_path / "a.txt").write_text(TEXT)
    segments, hashes = load_segments(CorpusConfig(files=[str(tmp_path / "a.txt")]), tokenizer, 12, tmp_path / "cache")
    assert list(hashes) == [str(tmp_path / "a.txt")]
    first = tokenizer("The cat sat on the mat. It was warm.", add_special_tokens=False)["input_ids"] + \
        tokenizer("The dog barked.", add_special_tokens=False)["input_ids"]
    second = tokenizer("A second document begins here and goes on for a while longer than the first one did.",
                       add_special_tokens=False)["input_ids"]
    expected = [first[i:i + 10] for i in range(0, len(first), 10)] + [second[i:i + 10] for i in range(0, len(second), 10)]
    expected = [piece for piece in expected if len(piece) >= 8]  # "short" and short tails are dropped
    rows = [segments.ids[i, :segments.sizes[i]].tolist() for i in range(len(segments))]
    assert rows == [[tokenizer.cls_token_id] + piece + [tokenizer.sep_token_id] for piece in expected]
    assert (segments.ids[segments.sizes < 12][:, -1] == tokenizer.pad_token_id).all()
    batch = segments.batch([0, len(segments) - 1], tokenizer.pad_token_id)
    assert batch["attention_mask"].sum(1).tolist() == [segments.sizes[0], segments.sizes[-1]]


def test_the_corpus_is_tokenised_once(tokenizer, tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text(TEXT)
    first, _ = load_segments(CorpusConfig(files=[str(tmp_path)]), tokenizer, 16, tmp_path / "cache")
    import bequest.data.corpus as corpus

    monkeypatch.setattr(corpus, "_segment", lambda *a: pytest.fail("tokenised again"))
    second, _ = load_segments(CorpusConfig(files=[str(tmp_path)]), tokenizer, 16, tmp_path / "cache")
    assert np.array_equal(first.ids, second.ids) and np.array_equal(first.sizes, second.sizes)


def test_split_is_disjoint_and_seeded(tokenizer, tmp_path):
    (tmp_path / "a.txt").write_text(("word " * 400 + "\n\n") * 3)
    segments, _ = load_segments(CorpusConfig(files=[str(tmp_path / "a.txt")]), tokenizer, 16, tmp_path / "cache")
    train, heldout = split_segments(segments, 5, None, seed=1)
    assert len(train) + len(heldout) == len(segments) and len(heldout) == 5
    again, _ = split_segments(segments, 5, 10, seed=1)
    assert len(again) == 10
    with pytest.raises(BequestError, match="not more than corpus.heldout_segments"):
        split_segments(segments, len(segments), None, seed=1)


def test_a_hub_dataset_is_a_corpus_of_one_document_per_row(tokenizer, tmp_path, monkeypatch):
    import datasets

    rows = {"body": ["The cat sat on the mat and looked at the dog for a long while.", "The dog barked back at the cat, twice."]}
    asked = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: asked.append((a, k)) or datasets.Dataset.from_dict(rows))
    spec = CorpusConfig(dataset={"path": "someone/texts", "name": "en", "split": "train", "column": "body"})
    segments, hashes = load_segments(spec, tokenizer, 64, tmp_path)
    assert asked == [(("someone/texts", "en"), {"split": "train"})]
    assert len(segments) == 2 and list(hashes) == ["hub:someone/texts/en/train"]
    expected = [tokenizer.cls_token_id] + tokenizer(rows["body"][1], add_special_tokens=False)["input_ids"] + [tokenizer.sep_token_id]
    assert segments.ids[1, : segments.sizes[1]].tolist() == expected
    with pytest.raises(BequestError, match="has no column 'text'"):
        load_segments(CorpusConfig(dataset={"path": "someone/texts"}), tokenizer, 64, tmp_path)


def test_an_unreachable_hub_dataset_is_one_clear_error(tokenizer, tmp_path, monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(BequestError, match="cannot load the dataset wikitext .*ConnectionError.*give local corpus.files"):
        load_segments(CorpusConfig(dataset={"path": "wikitext"}), tokenizer, 64, tmp_path)


def test_missing_corpus_file(tokenizer, tmp_path):
    with pytest.raises(BequestError, match="corpus file .*nope.txt not found"):
        load_segments(CorpusConfig(files=[str(tmp_path / "nope.txt")]), tokenizer, 16, tmp_path)


@pytest.fixture(scope="module")
def general(tmp_path_factory, tiny_teacher, shared_data):
    """A 2-layer general student distilled with MiniLMv2 + hidden states on the first 400 lines of the Wikipedia text."""
    folder = tmp_path_factory.mktemp("general")
    lines = (shared_data / "wiki" / "enwiki_sample.txt").open(encoding="utf-8").readlines()[:400]
    (folder / "wiki.txt").write_text("".join(lines), encoding="utf-8")
    students = [{"name": "general", "layers": 2, "init": "uniform",
                 "objectives": {"minilmv2": {"relation_heads": 4}, "hidden": {"weight": 0.1}},
                 "train": {"max_steps": 12, "batch_size": 8, "learning_rate": 1e-3, "log_every": 4, "checkpoint_every": 5}},
                {"name": "mlm", "layers": 1, "init": "lower", "objectives": {"mlm": {}, "attention_kl": {}},
                 "train": {"max_steps": 4, "batch_size": 8, "learning_rate": 1e-3}}]
    recipe = tiny_recipe(folder, tiny_teacher, folder, task=None, corpus={"files": [str(folder / "wiki.txt")],
                         "max_length": 64, "heldout_segments": 16}, students=students,
                         runtime={"precision": "fp32"})  # 12 steps of a 32-wide model: bf16 rounding would blur the loss comparison
    return folder, run_recipe(load_config(recipe))


def test_task_agnostic_run_exports_a_general_student(general):
    folder, results = general
    row = results["students"]["general"]
    assert results["task"] is None and row["num_layers"] == 2 and row["layers_from"] == [0, 3]
    assert row["heldout_loss"] > 0 and row["train_examples_per_s"] > 0
    model = AutoModel.from_pretrained(folder / "run" / "general")
    assert model.config.num_hidden_layers == 2
    curve = json.loads((folder / "run" / "logs" / "general.curve.json").read_text())
    assert [point["step"] for point in curve] == [4, 8, 12]
    card = (folder / "run" / "general" / "README.md").read_text()
    assert "general student" in card and "0.1*hidden + 1*minilmv2" in card
    env = json.loads((folder / "run" / "environment.json").read_text())
    assert env["heldout_segments"] == 16 and list(env["data_files"]) == [str(folder / "wiki.txt")]


def test_mlm_student_exports_the_encoder_alone(general):
    from safetensors.torch import load_file

    folder, results = general
    assert results["students"]["mlm"]["heldout_loss"] > 0
    weights = load_file(str(folder / "run" / "mlm" / "model.safetensors"))
    assert not any("transform" in key or key == "bias" for key in weights)  # the MLM head stays behind
    assert AutoModel.from_pretrained(folder / "run" / "mlm").config.num_hidden_layers == 1


def test_distillation_lowers_the_held_out_loss(general):
    folder, _ = general
    history = json.loads((folder / "run" / "logs" / "general.json").read_text())
    curve = json.loads((folder / "run" / "logs" / "general.curve.json").read_text())
    assert curve[-1]["train_loss"] < curve[0]["train_loss"]
    assert history[-1]["heldout_loss"] < curve[0]["train_loss"]


def test_the_general_student_is_fine_tuned_on_a_task(general, tiny_teacher, tiny_glue, tmp_path):
    folder, _ = general
    students = [{"name": "from-general", "model": str(folder / "run" / "general"),
                 "objectives": {"task": {}}, "train": {"epochs": 1, "batch_size": 16}}]
    results = run_recipe(load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, cache_dir=str(folder / "cache"),
                                                 students=students)))
    row = results["students"]["from-general"]
    assert row["init"].startswith("pretrained") and row["num_layers"] == 2
    general_weights = AutoModel.from_pretrained(folder / "run" / "general").embeddings.word_embeddings.weight
    tuned = AutoModel.from_pretrained(tmp_path / "run" / "from-general").embeddings.word_embeddings.weight
    assert not torch.equal(general_weights, tuned)  # it trained, starting from the general student


def test_a_killed_task_agnostic_run_resumes_to_the_same_student(general, tiny_teacher, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    import bequest.train.loop as loop

    folder, _ = general
    students = [{"name": "g", "layers": 1, "objectives": {"minilmv2": {"relation_heads": 4}, "mlm": {"weight": 0.5}},
                 "train": {"max_steps": 8, "batch_size": 8, "learning_rate": 1e-3, "checkpoint_every": 3}}]
    corpus = {"files": [str(folder / "wiki.txt")], "max_length": 64, "heldout_segments": 16}

    def recipe(where):
        where.mkdir()
        return load_config(tiny_recipe(where, tiny_teacher, where, task=None, corpus=corpus, students=students,
                                       cache_dir=str(folder / "cache")))

    run_recipe(recipe(tmp_path / "reference"))
    real_save = loop._save_checkpoint

    def save_then_die(*args):
        real_save(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_save_checkpoint", save_then_die)
    config = recipe(tmp_path / "killed")
    with pytest.raises(KeyboardInterrupt):
        run_recipe(config)
    monkeypatch.setattr(loop, "_save_checkpoint", real_save)
    run_recipe(config, resume=True)
    first = load_file(str(tmp_path / "reference" / "run" / "g" / "model.safetensors"))
    second = load_file(str(tmp_path / "killed" / "run" / "g" / "model.safetensors"))
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_held_out_loss_is_repeatable_and_leaves_the_training_stream_alone(general, tiny_teacher, tokenizer):
    from transformers import AutoModel as Auto

    from bequest.config import ObjectivesConfig
    from bequest.objectives.terms import build_terms
    from bequest.train.distiller import Distiller
    from bequest.workload import heldout_loss

    folder, _ = general
    teacher = Auto.from_pretrained(tiny_teacher)
    segments, _ = load_segments(CorpusConfig(files=[str(folder / "wiki.txt")]), tokenizer, 64, folder / "cache")
    terms = build_terms(ObjectivesConfig.model_validate({"mlm": {}}), teacher.config, teacher.config, tokenizer)
    distiller = Distiller(Auto.from_pretrained(tiny_teacher), terms, teacher, None)
    held_out = segments.select(list(range(8)))
    torch.manual_seed(9)
    first = heldout_loss(distiller, held_out, 4, tokenizer.pad_token_id)
    after = torch.rand(1)
    second = heldout_loss(distiller, held_out, 4, tokenizer.pad_token_id)  # the global stream has moved on
    torch.manual_seed(9)
    assert first == second  # the same masks every time
    assert torch.equal(after, torch.rand(1))  # evaluation drew nothing from the training stream
