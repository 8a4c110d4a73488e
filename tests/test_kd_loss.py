"""Logit KD against an independent computation written with numpy."""

import numpy as np
import pytest
import torch

from bequest.kinds import CLASSIFICATION, REGRESSION


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _reference(student, teacher, labels, alpha, t):
    p_t, p_s = _softmax(teacher / t), _softmax(student / t)
    kl = (p_t * (np.log(p_t) - np.log(p_s))).sum(axis=-1).mean() * t * t
    ce = -np.log(_softmax(student)[np.arange(len(labels)), labels]).mean()
    return (1 - alpha) * ce + alpha * kl


@pytest.mark.parametrize(("alpha", "t"), [(0.5, 2.0), (0.9, 1.0), (0.0, 4.0), (1.0, 10.0)])
def test_kd_loss_matches_the_formula(alpha, t):
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(8, 3, generator=generator, dtype=torch.float64)
    teacher = torch.randn(8, 3, generator=generator, dtype=torch.float64) * 3
    labels = torch.randint(0, 3, (8,), generator=generator)
    got = CLASSIFICATION.kd_loss(student, teacher, labels, alpha, t).item()
    assert got == pytest.approx(_reference(student.numpy(), teacher.numpy(), labels.numpy(), alpha, t), rel=1e-10)


def test_soft_target_loss_is_zero_at_the_teacher_and_pulls_towards_it():
    teacher = torch.tensor([[2.0, -1.0, 0.5]])
    assert CLASSIFICATION.soft_loss(teacher.clone(), teacher, 2.0).item() == pytest.approx(0.0, abs=1e-7)
    student = torch.zeros(1, 3, requires_grad=True)
    CLASSIFICATION.soft_loss(student, teacher, 2.0).backward()
    # gradient of KL*T^2 w.r.t. student logits is T * (p_s - p_t): descending it moves towards the teacher
    expected = 2.0 * (torch.softmax(student.detach() / 2, -1) - torch.softmax(teacher / 2, -1))
    assert torch.allclose(student.grad, expected, atol=1e-6)


def test_regression_uses_mse_on_both_terms():
    student = torch.tensor([[1.0], [2.0]])
    teacher = torch.tensor([[1.5], [1.0]])
    labels = torch.tensor([0.0, 4.0])
    expected = 0.25 * ((1 - 0) ** 2 + (2 - 4) ** 2) / 2 + 0.75 * ((1 - 1.5) ** 2 + (2 - 1) ** 2) / 2
    assert REGRESSION.kd_loss(student, teacher, labels, 0.75, 2.0).item() == pytest.approx(expected)
    assert REGRESSION.loss(student, labels).item() == pytest.approx(2.5)
