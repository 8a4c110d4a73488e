"""The recipe's sections that say what a run reads: a task's data (its files, columns and lengths), extractive
QA's windows, sentence embeddings' pooling, and a corpus for task-agnostic distillation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from bequest.section import Section


class AugmentConfig(Section):
    """data.augment: edited copies of the labelled texts, learned from the teacher's outputs only (TinyBERT's
    augmentation; its paper's p 0.4, N 20, K 15 are the defaults)."""

    method: str = Field("neighbours", description="neighbours: single-piece words to their nearest neighbours in the "
                        "teacher's input embeddings; mlm: to a masked LM's top predictions (data.augment.model, default "
                        "the teacher's own head); dropout: whole words dropped")
    copies: int = Field(20, ge=1, description="edited copies of each labelled example")
    probability: float = Field(0.4, gt=0, le=1, description="chance that a word is replaced (dropout: dropped)")
    candidates: int = Field(15, ge=1, description="neighbours / mlm: a replacement is drawn from this many best candidates")
    model: str | None = Field(None, description="mlm: a masked-LM folder or hub id with the teacher's vocabulary "
                              "(default: the teacher checkpoint, which needs its MLM head)")

    @model_validator(mode="after")
    def _known_method(self) -> AugmentConfig:
        from bequest.data.augment import AUGMENTERS

        if self.method not in AUGMENTERS:
            raise ValueError(f"method: unknown augmentation method {self.method!r}: use one of {', '.join(AUGMENTERS.names())}")
        if self.model is not None and self.method != "mlm":
            raise ValueError(f"model is read by method mlm only (method is {self.method}): drop it or set method: mlm")
        return self


class DataConfig(Section):
    """Where a task's data is and how much of it is used."""

    dir: str | None = Field(None, description="local glue_data folder (SQuAD: folder of the JSON files); null loads from the Hugging Face hub")
    max_train_examples: int | None = Field(None, ge=1, description="random subsample of the training set (SQuAD: questions)")
    max_eval_examples: int | None = Field(None, ge=1, description="random subsample of each dev set (SQuAD: questions)")
    max_length: int = Field(128, ge=8, description="tokens per example (pairs: both sentences), longer ones truncated")
    split_by_article: float | None = Field(
        None, gt=0, lt=1, description="SQuAD without a train file: train on the dev set's articles but this seeded random "
        "fraction of them, which is held out for evaluation")
    train: str | None = Field(None, description="text-classification / text-regression: the training file (.csv .tsv "
                              ".json .jsonl .parquet) or hub:<dataset id>")
    validation: str | None = Field(None, description="the validation file or hub:<dataset id>; default: a seeded, "
                                   "stratified validation_fraction of train")
    validation_fraction: float = Field(0.1, gt=0, lt=1, description="share of train held out when there is no validation file")
    test: str | None = Field(None, description="a test file or hub:<dataset id>: scored once at the end with the final "
                             "models, reported beside validation (never used to choose anything)")
    text_column: str = Field("text", description="the column holding the text")
    text_pair_column: str | None = Field(None, description="the column holding the second text of a pair (NLI, paraphrase)")
    label_column: str = Field("label", description="the column holding the label: class names or integers; numbers "
                              "with decimals make the task a regression")
    label_separator: str | None = Field(None, min_length=1, description="text-classification: several labels a row, "
                                        "written in one string cut at this separator (e.g. '|'); a column of lists "
                                        "(JSON, parquet, hub) needs none")
    label_all_tokens: bool = Field(False, description="token-classification: train on every sub-word of a word, not only "
                                   "its first (scored on first sub-words either way)")
    num_proc: int | None = Field(None, ge=1, description="processes that tokenise your own files (datasets.map); "
                                 "the result is cached by fingerprint, so a second run reads it back")
    validation_columns: list[str | int] = Field(
        ["sentence1", "sentence2", "score"], min_length=3, max_length=3,
        description="sentence-embedding: the validation pair file's first text, second text and gold score columns "
        "(integers: positions in a header-less file)")
    test_columns: list[str | int] | None = Field(
        None, min_length=3, max_length=3, description="sentence-embedding: the same for data.test (default: validation_columns)")
    transfer: str | None = Field(None, description="unlabelled texts the students also learn from, from the teacher's outputs "
                                 "only (logit KD needs no labels; the teacher is fine-tuned on data.train alone): a .txt "
                                 "file (a text a line), a .csv .tsv .json .jsonl .parquet file or hub:<dataset id> with "
                                 "data.text_column (pairs: and data.text_pair_column)")
    transfer_ratio: float | None = Field(None, gt=0, description="at most this many transfer texts per labelled training "
                                         "example (a seeded random subset); default: all of them")
    transfer_split: str = Field("train", description="hub:<id> data.transfer: the split it reads")
    augment: AugmentConfig | None = Field(None, description="edited copies of the labelled texts the students also learn "
                                          "from, from the teacher's outputs only (a transfer set made of train)")
    hub_config: str | None = Field(None, description="hub:<id> data: the dataset's configuration name")
    train_split: str = Field("train", description="hub:<id> data: the split data.train reads")
    validation_split: str = Field("validation", description="hub:<id> data: the split data.validation reads")
    test_split: str = Field("test", description="hub:<id> data: the split data.test reads")


class EmbeddingConfig(Section):
    """sentence-embedding: how the teacher's token vectors become a sentence embedding, and what the student keeps."""

    pooling: Literal["mean", "cls", "max"] | None = Field(
        None, description="a plain encoder teacher's pooling (default mean); a sentence-transformers teacher's own is read "
        "from its folder")
    normalize: bool | None = Field(None, description="a plain encoder teacher: L2-normalise the embeddings (default "
                                   "false); a sentence-transformers teacher's Normalize module is read from its folder")
    match_teacher_dim: bool = Field(True, description="a student narrower than the teacher keeps its learned projection "
                                    "to the teacher's width as a Dense module (teacher-compatible vectors); false drops it")


class QAConfig(Section):
    """Extractive QA (SQuAD): the sliding window over long contexts and how answers are read from the logits."""

    stride: int = Field(128, ge=0, description="tokens shared by consecutive windows over a long context")
    n_best: int = Field(20, ge=1, description="start and end candidates considered per window")
    max_answer_length: int = Field(30, ge=1, description="longest answer in tokens")
    null_threshold: float = Field(0.0, description="SQuAD v2.0: answer nothing when the no-answer score beats the best span's by more than this")


class HubTextConfig(Section):
    """A text dataset loaded with `datasets.load_dataset(path, name, split=split)`; each row is a document."""

    path: str = Field(description="the dataset's hub id or local folder, as datasets.load_dataset takes it")
    name: str | None = Field(None, description="the dataset's configuration name")
    split: str = Field("train", description="the split to read")
    column: str = Field("text", description="the column holding the text")


class CorpusConfig(Section):
    """Raw text for task-agnostic distillation (instead of a task): local files or a hub dataset."""

    files: list[str] | None = Field(None, min_length=1, description="text files, or folders of *.txt: one paragraph per line, blank line between documents")
    dataset: HubTextConfig | None = Field(None, description="a hub text dataset instead of files")
    max_length: int = Field(128, ge=16, description="tokens per segment, [CLS] and [SEP] included")
    max_segments: int | None = Field(None, ge=1, description="random subset of training segments")
    heldout_segments: int = Field(256, ge=1, description="segments kept out of training to measure the loss on")

    @model_validator(mode="after")
    def _one_source(self) -> CorpusConfig:
        if (self.files is None) == (self.dataset is None):
            raise ValueError("give either files or dataset")
        return self
