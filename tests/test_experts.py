"""Distillation Experts against a hand computation (METHOD.md, DE)."""

import math

import pytest
import torch
import torch.nn.functional as F

from recbole_derrd.model.experts import DistillationExperts, annealed_temperature, de_loss


def hand_reconstruction(experts, student_repr, selection):
    """sum_m s_m * (W2_m relu(W1_m h_s + b1_m) + b2_m), one entity and one expert at a time."""
    rows = []
    for entity in range(student_repr.shape[0]):
        total = torch.zeros(experts.teacher_dim, dtype=student_repr.dtype)
        for m in range(experts.num_experts):
            hidden = F.relu(student_repr[entity] @ experts.first_weight[m] + experts.first_bias[m])
            output = hidden @ experts.second_weight[m] + experts.second_bias[m]
            total = total + selection[entity, m] * output
        rows.append(total)
    return torch.stack(rows)


def test_architecture_follows_the_paper():
    experts = DistillationExperts(student_dim=20, teacher_dim=200, num_experts=30)
    assert experts.hidden_dim == (20 + 200) // 2
    assert experts.first_weight.shape == (30, 20, 110)
    assert experts.second_weight.shape == (30, 110, 200)
    assert experts.selection.in_features == 200 and experts.selection.out_features == 30


def test_reconstruction_and_loss_equal_a_hand_computation():
    torch.manual_seed(0)
    experts = DistillationExperts(student_dim=3, teacher_dim=5, num_experts=4).double()
    student_repr = torch.randn(6, 3, dtype=torch.float64)
    teacher_repr = torch.randn(6, 5, dtype=torch.float64)
    selection = torch.softmax(torch.randn(6, 4, dtype=torch.float64), dim=1)
    with torch.no_grad():
        expected = hand_reconstruction(experts, student_repr, selection)
        actual = experts.reconstruct(student_repr, selection)
    torch.testing.assert_close(actual, expected)
    expected_loss = torch.tensor(
        [sum((teacher_repr[e, d] - expected[e, d]).item() ** 2 for d in range(5)) for e in range(6)],
        dtype=torch.float64,
    )
    torch.testing.assert_close(de_loss(teacher_repr, actual), expected_loss)


def test_forward_uses_gumbel_selection_of_the_teacher_representation():
    torch.manual_seed(1)
    experts = DistillationExperts(student_dim=3, teacher_dim=5, num_experts=4).double()
    student_repr = torch.randn(6, 3, dtype=torch.float64)
    teacher_repr = torch.randn(6, 5, dtype=torch.float64)
    torch.manual_seed(7)
    loss = experts(student_repr, teacher_repr, tau=0.5)
    torch.manual_seed(7)  # the same Gumbel noise
    selection = F.gumbel_softmax(experts.selection(teacher_repr), tau=0.5, hard=False)
    expected = de_loss(teacher_repr, hand_reconstruction(experts, student_repr, selection))
    torch.testing.assert_close(loss, expected)


def test_gradients_reach_student_experts_and_selection_but_not_teacher():
    experts = DistillationExperts(student_dim=3, teacher_dim=5, num_experts=4)
    student_repr = torch.randn(6, 3, requires_grad=True)
    teacher_repr = torch.randn(6, 5)
    experts(student_repr, teacher_repr, tau=1.0).sum().backward()
    assert student_repr.grad is not None and student_repr.grad.abs().sum() > 0
    for parameter in experts.parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0
    assert teacher_repr.grad is None


def test_selection_weights_sum_to_one_and_become_one_hot_as_tau_goes_to_zero():
    torch.manual_seed(2)
    experts = DistillationExperts(student_dim=4, teacher_dim=8, num_experts=30)
    teacher_repr = torch.randn(500, 8)
    soft = experts.selection_weights(teacher_repr, tau=1.0)
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(500))
    assert soft.max(dim=1).values.mean() < 0.9  # genuinely soft at tau = 1
    for tau, share_one_hot in ((1e-2, 0.9), (1e-10, 1.0)):
        weights = experts.selection_weights(teacher_repr, tau=tau)
        torch.testing.assert_close(weights.sum(dim=1), torch.ones(500))
        assert (weights.max(dim=1).values > 1 - 1e-4).float().mean() >= share_one_hot
    # at tau -> 0 the chosen expert follows alpha: with logits (3, 0, 0), expert 0 wins with
    # probability e^3 / (e^3 + 2)
    experts = DistillationExperts(student_dim=4, teacher_dim=8, num_experts=3)
    with torch.no_grad():
        experts.selection.weight.zero_()
        experts.selection.bias.copy_(torch.tensor([3.0, 0.0, 0.0]))
    picks = experts.selection_weights(torch.randn(20000, 8), tau=1e-10).argmax(dim=1)
    expected_share = math.exp(3) / (math.exp(3) + 2)
    assert abs((picks == 0).float().mean().item() - expected_share) < 0.01


@pytest.mark.parametrize("epochs", [1, 10, 300])
def test_temperature_annealing_schedule(epochs):
    assert annealed_temperature(0, 1.0, 1e-10, epochs) == pytest.approx(1.0)
    assert annealed_temperature(epochs, 1.0, 1e-10, epochs) == pytest.approx(1e-10)
    assert annealed_temperature(epochs + 5, 1.0, 1e-10, epochs) == pytest.approx(1e-10)
    half = annealed_temperature(epochs / 2, 1.0, 1e-10, epochs)
    assert half == pytest.approx(1e-5)  # geometric: tau_0 (tau_P / tau_0) ** (e / P)
