"""GLUE task specs and loading: real files from the shared data folder, synthetic layouts, every error."""

import hashlib
from functools import lru_cache
from pathlib import Path

import datasets
import pytest

from bequest.data.glue import glue_split_path, load_glue_split
from bequest.data.tasks import TASKS, get_task
from bequest.errors import BequestError
from bequest.io import sha256_file

# ---------------------------------------------------------------- task specs


@pytest.mark.parametrize(
    "alias, name",
    [
        ("SST-2", "sst2"),
        ("sst2", "sst2"),
        ("sst-2", "sst2"),
        ("STS-B", "stsb"),
        ("stsb", "stsb"),
        ("sts_b", "stsb"),
        ("MNLI", "mnli"),
        ("CoLA", "cola"),
        (" mrpc ", "mrpc"),
        ("QQP", "qqp"),
        ("QNLI", "qnli"),
        ("RTE", "rte"),
        ("WNLI", "wnli"),
    ],
)
def test_get_task_aliases(alias, name):
    assert get_task(alias) is TASKS[name]


def test_get_task_unknown_lists_known_tasks():
    with pytest.raises(BequestError) as err:
        get_task("squad3")
    message = str(err.value)
    assert "'squad3'" in message and "\n" not in message
    for name in [*TASKS, "squad", "squad_v2"]:
        assert name in message


def test_task_specs():
    builtin = {name: spec for name, spec in TASKS.items() if spec.kind_name in ("classification", "regression")}
    assert set(builtin) == {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"}  # plugins add others
    for name, spec in builtin.items():
        assert spec.name == name
        assert spec.main_metric in spec.metrics
        # A folder passed directly as --data-dir is recognised by its name.
        assert get_task(spec.glue_dir) is spec
    mnli = TASKS["mnli"]
    assert mnli.label_names == ("entailment", "neutral", "contradiction")
    assert mnli.dev_splits == ("dev_matched", "dev_mismatched")
    assert mnli.num_labels == 3 and not mnli.is_regression
    stsb = TASKS["stsb"]
    assert stsb.is_regression and stsb.num_labels == 1 and stsb.main_metric == "pearson"
    assert [t.name for t in TASKS.values() if t.is_regression] == ["stsb"]
    assert TASKS["cola"].main_metric == "matthews_correlation"
    assert TASKS["mrpc"].main_metric == TASKS["qqp"].main_metric == "f1"
    assert TASKS["qnli"].label_names == TASKS["rte"].label_names == ("entailment", "not_entailment")
    assert TASKS["sst2"].glue_dir == "SST-2" and TASKS["stsb"].glue_dir == "STS-B"


# ---------------------------------------------------------------- real GLUE files

ROW_COUNTS = {
    ("cola", "train"): 8551,
    ("cola", "dev"): 1043,
    ("sst2", "train"): 67349,
    ("sst2", "dev"): 872,
    ("mrpc", "train"): 3667,
    ("mrpc", "dev"): 408,
    ("stsb", "train"): 5749,
    ("stsb", "dev"): 1500,
    ("wnli", "train"): 635,
    ("wnli", "dev"): 71,
}
# Number of rows labelled 1, counted with cut/awk on the files.
POSITIVES = {
    ("cola", "train"): 6023,
    ("cola", "dev"): 721,
    ("sst2", "train"): 37569,
    ("sst2", "dev"): 444,
    ("mrpc", "train"): 2473,
    ("mrpc", "dev"): 279,
    ("wnli", "train"): 312,
    ("wnli", "dev"): 31,
}


@lru_cache(maxsize=None)
def _real(name: str, split: str, glue_root: Path) -> datasets.Dataset:
    return load_glue_split(TASKS[name], split, glue_root)


@pytest.fixture(scope="module")
def glue_root(shared_data):
    return shared_data / "glue"


@pytest.mark.parametrize("name, split", list(ROW_COUNTS))
def test_real_split_rows_and_labels(glue_root, name, split):
    task = TASKS[name]
    ds = _real(name, split, glue_root)
    assert ds.column_names == ["text_a", "text_b", "label"]
    assert len(ds) == ROW_COUNTS[(name, split)]
    assert all(ds["text_a"])
    if name in ("cola", "sst2"):
        assert set(ds["text_b"]) == {None}
    else:
        assert all(isinstance(b, str) and b for b in ds["text_b"])
    labels = list(ds["label"])
    if task.is_regression:
        assert min(labels) == 0.0 and max(labels) == 5.0
    else:
        assert set(labels) == {0, 1}
        assert sum(labels) == POSITIVES[(name, split)]


def test_real_known_rows(glue_root):
    cola_dev = _real("cola", "dev", glue_root)
    assert cola_dev[0] == {"text_a": "The sailors rode the breeze clear of the rocks.", "text_b": None, "label": 1}
    assert cola_dev[4] == {"text_a": "As you eat the most, you want the least.", "text_b": None, "label": 0}
    assert cola_dev[1042]["text_a"] == "John talked to Bill about himself."
    # Line 3057 of CoLA train: quote characters stay as written.
    assert _real("cola", "train", glue_root)[3056]["text_a"] == 'Susan whispered "Shut up".'

    sst2_dev = _real("sst2", "dev", glue_root)
    assert sst2_dev[0] == {"text_a": "it 's a charming and often affecting journey . ", "text_b": None, "label": 1}
    assert sst2_dev[1]["label"] == 0

    mrpc_dev = _real("mrpc", "dev", glue_root)
    # An unbalanced quote opens the second sentence: only unquoted reading keeps the row intact.
    assert mrpc_dev[0]["text_b"] == '" The foodservice pie business does not fit our long-term growth strategy .'
    assert mrpc_dev[0]["label"] == 1 and mrpc_dev[1]["label"] == 0
    mrpc_train = _real("mrpc", "train", glue_root)
    assert mrpc_train[0]["text_a"].startswith("Amrozi accused his brother")
    assert mrpc_train[0]["label"] == 1

    stsb_dev = _real("stsb", "dev", glue_root)
    assert stsb_dev[0]["text_a"] == "A man with a hard hat is dancing."
    assert stsb_dev[0]["text_b"] == "A man wearing a hard hat is dancing."
    assert stsb_dev[0]["label"] == pytest.approx(5.0)
    assert stsb_dev[1]["label"] == pytest.approx(4.75)
    assert sum(stsb_dev["label"]) == pytest.approx(3545.861, abs=1e-2)

    wnli_dev = _real("wnli", "dev", glue_root)
    assert wnli_dev[0] == {
        "text_a": "The drain is clogged with hair. It has to be cleaned.",
        "text_b": "The hair has to be cleaned.",
        "label": 0,
    }


def test_real_task_folder_as_data_dir_and_hash(glue_root):
    task = TASKS["wnli"]
    direct = load_glue_split(task, "dev", glue_root / "WNLI")
    assert direct[:] == _real("wnli", "dev", glue_root)[:]
    path = glue_split_path(task, "dev", glue_root)
    assert path == glue_root / "WNLI" / "dev.tsv"
    assert sha256_file(path).startswith("cba00490596dd14b")  # from SOURCES.md


# ---------------------------------------------------------------- synthetic layouts


def write_tsv(path: Path, rows: list[list[str]], prefix: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(prefix + "".join("\t".join(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_qqp_layout(tmp_path):
    header = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
    write_tsv(
        tmp_path / "QQP" / "train.tsv",
        [header, ["7", "1", "2", 'What is "love?', "Why is love?", "1"], ["8", "3", "4", "A?", "B?", "0"]],
    )
    ds = load_glue_split(TASKS["qqp"], "train", tmp_path)
    assert ds[:] == {"text_a": ['What is "love?', "A?"], "text_b": ["Why is love?", "B?"], "label": [1, 0]}


MNLI_TRAIN_HEADER = [
    "index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
    "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label",
]  # fmt: skip
MNLI_DEV_HEADER = MNLI_TRAIN_HEADER[:-1] + ["label2", "label3", "label4", "label5", "gold_label"]


def _mnli_row(width: int, premise: str, hypothesis: str, gold: str) -> list[str]:
    return ["0", "1", "1e", "fiction", "( a )", "( b )", "(ROOT a)", "(ROOT b)", premise, hypothesis] + [
        gold
    ] * (width - 10)


def test_mnli_layout_both_dev_files(tmp_path):
    folder = tmp_path / "MNLI"
    write_tsv(folder / "train.tsv", [MNLI_TRAIN_HEADER, _mnli_row(12, "P0", "H0", "neutral")])
    write_tsv(
        folder / "dev_matched.tsv",
        [
            MNLI_DEV_HEADER,
            _mnli_row(16, "P1", "H1", "entailment"),
            _mnli_row(16, "P2", "H2", "contradiction"),
            _mnli_row(16, "P3", "H3", "neutral"),
        ],
    )
    write_tsv(folder / "dev_mismatched.tsv", [MNLI_DEV_HEADER, _mnli_row(16, "P4", "H4", "contradiction")])
    task = TASKS["mnli"]
    assert load_glue_split(task, "train", tmp_path)[:] == {"text_a": ["P0"], "text_b": ["H0"], "label": [1]}
    matched = load_glue_split(task, "dev_matched", tmp_path)
    assert matched[:] == {"text_a": ["P1", "P2", "P3"], "text_b": ["H1", "H2", "H3"], "label": [0, 2, 1]}
    mismatched = load_glue_split(task, "dev_mismatched", tmp_path)
    assert mismatched[:] == {"text_a": ["P4"], "text_b": ["H4"], "label": [2]}
    assert glue_split_path(task, "dev_mismatched", tmp_path) == folder / "dev_mismatched.tsv"


@pytest.mark.parametrize(
    "name, header",
    [("qnli", ["index", "question", "sentence", "label"]), ("rte", ["index", "sentence1", "sentence2", "label"])],
)
def test_qnli_rte_layout(tmp_path, name, header):
    task = TASKS[name]
    rows = [header, ["0", "Q one", "S one", "not_entailment"], ["1", "Q two", "S two", "entailment"]]
    write_tsv(tmp_path / task.glue_dir / "dev.tsv", rows)
    ds = load_glue_split(task, "dev", tmp_path)
    assert ds[:] == {"text_a": ["Q one", "Q two"], "text_b": ["S one", "S two"], "label": [1, 0]}


def test_mrpc_bom_and_blank_lines(tmp_path):
    header = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
    path = write_tsv(tmp_path / "MRPC" / "dev.tsv", [header, ["0", "1", "2", "a", "b"], [], ["1", "3", "4", "c", "d"]], "\ufeff")
    ds = load_glue_split(TASKS["mrpc"], "dev", tmp_path)
    assert ds[:] == {"text_a": ["a", "c"], "text_b": ["b", "d"], "label": [0, 1]}
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")


def test_cola_first_row_is_data_and_stsb_scores_are_floats(tmp_path):
    write_tsv(tmp_path / "CoLA" / "train.tsv", [["gj04", "0", "*", "Bad one."], ["gj04", "1", "", "Good one."]])
    cola = load_glue_split(TASKS["cola"], "train", tmp_path)
    assert cola[:] == {"text_a": ["Bad one.", "Good one."], "text_b": [None, None], "label": [0, 1]}
    header = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"]
    write_tsv(tmp_path / "STS-B" / "dev.tsv", [header, ["0", "g", "f", "y", "0", "n", "n", "A", "B", "3.800"]])
    stsb = load_glue_split(TASKS["stsb"], "dev", tmp_path)
    assert stsb.features["label"].dtype == "float32"
    assert stsb[0]["label"] == pytest.approx(3.8)


def test_sha256_file(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"bequest" * 1000)
    assert sha256_file(path) == hashlib.sha256(b"bequest" * 1000).hexdigest()


# ---------------------------------------------------------------- hub


def test_hub_maps_columns_and_split_names(monkeypatch):
    calls = []

    def fake_load_dataset(path, name, split):
        calls.append((path, name, split))
        if name == "mnli":
            return datasets.Dataset.from_dict(
                {"premise": ["P"], "hypothesis": ["H"], "label": [2], "idx": [0]}
            )
        return datasets.Dataset.from_dict({"sentence": ["S"], "label": [1], "idx": [0]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    mnli = load_glue_split(TASKS["mnli"], "dev_mismatched", None)
    assert mnli[:] == {"text_a": ["P"], "text_b": ["H"], "label": [2]}
    sst2 = load_glue_split(TASKS["sst2"], "dev", None)
    assert sst2[:] == {"text_a": ["S"], "text_b": [None], "label": [1]}
    assert sst2.features == load_glue_split(TASKS["sst2"], "train", None).features
    assert calls == [
        ("nyu-mll/glue", "mnli", "validation_mismatched"),
        ("nyu-mll/glue", "sst2", "validation"),
        ("nyu-mll/glue", "sst2", "train"),
    ]


def test_hub_unreachable(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(BequestError) as err:
        load_glue_split(TASKS["rte"], "train", None)
    message = str(err.value)
    assert "unreachable" in message and "--data-dir" in message and "\n" not in message


# ---------------------------------------------------------------- errors


def _error(task: str, split: str, data_dir) -> str:
    with pytest.raises(BequestError) as err:
        load_glue_split(TASKS[task], split, data_dir)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_error_missing_data_dir(tmp_path):
    assert f"data dir {tmp_path / 'nope'} not found" in _error("rte", "train", tmp_path / "nope")


def test_error_missing_task_folder(tmp_path):
    (tmp_path / "SST-2").mkdir()
    message = _error("qnli", "train", tmp_path)
    assert f"GLUE folder {tmp_path / 'QNLI'} not found" in message and "--data-dir" in message
    # A folder that is not named after the task is not taken for the task folder.
    write_tsv(tmp_path / "other" / "train.tsv", [["index", "question", "sentence", "label"]])
    assert f"GLUE folder {tmp_path / 'other' / 'QNLI'} not found" in _error("qnli", "train", tmp_path / "other")


def test_error_missing_file(tmp_path):
    write_tsv(tmp_path / "MNLI" / "train.tsv", [MNLI_TRAIN_HEADER, _mnli_row(12, "P", "H", "neutral")])
    message = _error("mnli", "dev_matched", tmp_path)
    assert f"GLUE file {tmp_path / 'MNLI' / 'dev_matched.tsv'} not found" in message
    assert "dev_mismatched.tsv" in message


def test_error_unknown_split(tmp_path):
    assert "unknown split 'dev' for mnli" in _error("mnli", "dev", tmp_path)
    assert "unknown split 'test' for rte: use one of train, dev" in _error("rte", "test", None)


def test_error_malformed_row(tmp_path):
    path = write_tsv(
        tmp_path / "RTE" / "train.tsv",
        [["index", "sentence1", "sentence2", "label"], ["0", "a", "b", "entailment"], ["1", "a", "entailment"]],
    )
    message = _error("rte", "train", tmp_path)
    assert f"GLUE file {path} line 3: expected 4 tab-separated columns, found 3" in message


def test_error_malformed_headerless_cola(tmp_path):
    path = write_tsv(tmp_path / "CoLA" / "dev.tsv", [["gj04", "1", "", "Fine."], ["gj04", "1", "Cut."]])
    assert f"GLUE file {path} line 2: expected 4 tab-separated columns, found 3" in _error("cola", "dev", tmp_path)


def test_error_unknown_label(tmp_path):
    header = ["index", "question", "sentence", "label"]
    path = write_tsv(tmp_path / "QNLI" / "dev.tsv", [header, ["0", "q", "s", "entailment"], ["1", "q", "s", "neutral"]])
    message = _error("qnli", "dev", tmp_path)
    assert f"GLUE file {path} line 3: label 'neutral' is not one of entailment, not_entailment" in message


def test_error_bad_score(tmp_path):
    header = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"]
    path = write_tsv(tmp_path / "STS-B" / "train.tsv", [header, ["0", "g", "f", "y", "0", "n", "n", "A", "B", "high"]])
    assert f"GLUE file {path} line 2: score 'high' is not a number" in _error("stsb", "train", tmp_path)


@pytest.mark.parametrize("content", ["", "sentence\tlabel\n", "\n\n"])
def test_error_empty_file(tmp_path, content):
    path = tmp_path / "SST-2" / "train.tsv"
    path.parent.mkdir()
    path.write_text(content, encoding="utf-8")
    assert f"GLUE file {path} has no data rows" in _error("sst2", "train", tmp_path)


def test_error_header_lacks_column(tmp_path):
    # An SST-2 file where a QNLI file is expected.
    path = write_tsv(tmp_path / "QNLI" / "train.tsv", [["sentence", "label"], ["hi", "1"]])
    message = _error("qnli", "train", tmp_path)
    assert f"GLUE file {path}: header has no 'question' column (found sentence, label)" in message


def test_error_not_utf8(tmp_path):
    path = tmp_path / "WNLI" / "dev.tsv"
    path.parent.mkdir()
    path.write_bytes(b"index\tsentence1\tsentence2\tlabel\n0\t\xff\xfe\tb\t1\n")
    assert f"GLUE file {path} is not UTF-8 text" in _error("wnli", "dev", tmp_path)
