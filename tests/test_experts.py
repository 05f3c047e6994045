"""Distillation Experts against a hand computation (docs/method.md, DE)."""

import math

import pytest
import torch
import torch.nn.functional as F

from recbole_derrd.model.experts import (
    DistillationExperts, anneal_length, annealed_temperature, de_loss, floor_selection,
)


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


@pytest.mark.parametrize("configured, epochs, length", [
    (None, 50, 50), (None, 300, 300), (None, 2000, 300), (1000, 2000, 1000), (20, 2000, 20), (500, 100, 500),
])
def test_the_default_annealing_ends_by_epoch_300_whatever_the_epoch_cap(configured, epochs, length):
    """``de_anneal_epochs: ~`` anneals over the run's ``epochs`` up to 300: a run with a far
    ``epochs`` cap (2,000) reaches a near one-hot selection (tau 1e-3) by epoch 90, not 600;
    a set value is kept, longer than the run too."""
    assert anneal_length(configured, epochs) == length
    if configured is None and epochs == 2000:
        assert annealed_temperature(90, 1.0, 1e-10, length) == pytest.approx(1e-3)
        assert annealed_temperature(90, 1.0, 1e-10, epochs) == pytest.approx(10 ** -0.45)


# ----- the weight floor and sparse routing -----


def is_subnormal(tensor):
    """Non-zero values below float32's smallest normal number (slow on Intel CPUs)."""
    return (tensor != 0) & (tensor.abs() < torch.finfo(tensor.dtype).tiny)


def plugin_default(key):
    """A DERRD default as shipped in the plugin's YAML."""
    import yaml

    from recbole_derrd.config import plugin_properties_file

    with open(plugin_properties_file("model", "DERRD.yaml")) as handle:
        return yaml.safe_load(handle)[key]


def trained_like_experts(weight_floor, routing="auto", selection="gumbel", num_experts=30):
    """Experts at the paper's sizes whose selection logits spread as a trained network's do
    (several units apart), so that annealed Gumbel weights cross float32's subnormal range."""
    torch.manual_seed(3)
    experts = DistillationExperts(20, 200, num_experts, selection, weight_floor, routing)
    with torch.no_grad():
        experts.selection.weight.mul_(40.0)
    return experts


def mixture_inputs(experts, student_repr, teacher_repr, tau):
    """What meets the expert activations: the floored selection and the weighted hidden units
    (forward), and the experts' gradients (backward)."""
    selection = experts.selection_weights(teacher_repr, tau)
    weighted_hidden = selection.unsqueeze(-1) * experts.expert_hidden(student_repr)
    experts.zero_grad()
    de_loss(teacher_repr, experts.reconstruct(student_repr, selection)).sum().backward()
    gradients = [experts.first_weight.grad, experts.first_bias.grad, experts.second_weight.grad]
    return selection, weighted_hidden, gradients


@pytest.mark.parametrize("tau", [0.1, 0.03, 0.01, 1e-3])
def test_no_subnormal_value_reaches_the_mixture(tau):
    student_repr, teacher_repr = torch.randn(2000, 20), torch.randn(2000, 200)
    unfloored = trained_like_experts(weight_floor=0.0)
    torch.manual_seed(5)
    selection, _, _ = mixture_inputs(unfloored, student_repr, teacher_repr, tau)
    assert is_subnormal(selection).any()  # the stall this guards against is real at this tau

    floored = trained_like_experts(weight_floor=plugin_default("de_weight_floor"))
    for routing in ("dense", "sparse"):
        floored.routing = routing
        torch.manual_seed(5)
        selection, weighted_hidden, gradients = mixture_inputs(floored, student_repr, teacher_repr, tau)
        assert not is_subnormal(selection).any()
        assert not is_subnormal(weighted_hidden).any()
        for gradient in gradients:
            assert not is_subnormal(gradient).any()


def parameter_gradients(experts, student_repr, teacher_repr, tau, seed=11):
    """Loss and gradients (student representation, experts, selection network) of one DE
    forward + backward, with a fixed Gumbel draw."""
    student_repr = student_repr.detach().clone().requires_grad_()
    experts.zero_grad()
    torch.manual_seed(seed)
    loss = experts(student_repr, teacher_repr, tau).sum()
    loss.backward()
    named = {"student_repr": student_repr.grad}
    named.update({name: parameter.grad.clone() for name, parameter in experts.named_parameters()})
    return loss.detach(), named


@pytest.mark.parametrize("selection", ["gumbel", "attention"])
@pytest.mark.parametrize("tau", [1.0, 0.3, 0.1, 0.01, 1e-6])
def test_sparse_and_dense_routing_agree_on_loss_and_gradients(selection, tau):
    """The same floored mixture, through every expert or over the active pairs only: equal up
    to float32 rounding (relative 1e-5 of each tensor's scale)."""
    student_repr, teacher_repr = torch.randn(700, 20), torch.randn(700, 200)
    experts = trained_like_experts(1e-3, "dense", selection)
    dense_loss, dense_gradients = parameter_gradients(experts, student_repr, teacher_repr, tau)
    experts.routing = "sparse"
    sparse_loss, sparse_gradients = parameter_gradients(experts, student_repr, teacher_repr, tau)
    assert experts.routing_stats["sparse_calls"] == 1
    torch.testing.assert_close(sparse_loss, dense_loss, rtol=1e-5, atol=0)
    for name, dense_gradient in dense_gradients.items():
        scale = dense_gradient.abs().max().item()
        torch.testing.assert_close(
            sparse_gradients[name], dense_gradient, rtol=1e-5, atol=1e-5 * scale + 1e-12, msg=name
        )


@pytest.mark.parametrize("tau", [1.0, 0.1, 1e-6])
def test_the_floor_changes_the_mixture_by_at_most_the_dropped_weights(tau):
    """|sum_m s_m E_m - sum_{s_m >= floor} s_m E_m| <= sum of the dropped s_m * |E_m|: the
    floor's whole effect, bounded entity by entity."""
    floor = plugin_default("de_weight_floor")
    experts = trained_like_experts(0.0, "dense").double()
    student_repr = torch.randn(500, 20, dtype=torch.float64)
    teacher_repr = torch.randn(500, 200, dtype=torch.float64)
    torch.manual_seed(2)
    selection = experts.selection_weights(teacher_repr, tau)
    floored = floor_selection(selection, floor)
    with torch.no_grad():
        exact = experts.reconstruct(student_repr, selection)
        experts.weight_floor, experts.routing = floor, "sparse"
        approximate = experts.reconstruct(student_repr, floored)
        outputs = torch.einsum("emh,mht->emt", experts.expert_hidden(student_repr), experts.second_weight)
        outputs = outputs + experts.second_bias
    dropped = (selection - floored)
    bound = (dropped.unsqueeze(-1) * outputs).norm(dim=-1).sum(dim=1)
    assert ((approximate - exact).norm(dim=1) <= bound + 1e-9).all()
    assert (dropped <= floor).all() and ((floored == 0) | (floored >= floor)).all()


def test_a_zero_floor_is_the_dense_computation_exactly():
    experts = trained_like_experts(0.0, "auto")
    student_repr, teacher_repr = torch.randn(300, 20), torch.randn(300, 200)
    selection = experts.selection_weights(teacher_repr, 1e-6)
    assert floor_selection(selection, 0.0) is selection
    assert torch.equal(experts.reconstruct(student_repr, selection), experts.dense_reconstruct(student_repr, selection))
    assert experts.routing_stats["sparse_calls"] == 0


def test_auto_routing_goes_sparse_only_once_few_experts_are_active():
    experts = trained_like_experts(1e-3, "auto")
    student_repr, teacher_repr = torch.randn(1000, 20), torch.randn(1000, 200)
    with torch.no_grad():
        experts.selection.weight.zero_()  # every expert equally likely: at tau = 1 all active
        experts(student_repr, teacher_repr, 1.0)
        assert experts.routing_stats["sparse_calls"] == 0
        assert experts.routing_stats["active_pairs"] > 0.9 * 1000 * 30
        experts.reset_routing_stats()
        experts(student_repr, teacher_repr, 1e-6)
        assert experts.routing_stats["sparse_calls"] == 1
        assert experts.routing_stats["active_pairs"] < 1.1 * 1000


@pytest.mark.parametrize("floor", [-1e-3, 1 / 30, 0.5])
def test_impossible_weight_floors_are_refused(floor):
    with pytest.raises(ValueError, match="weight_floor"):
        DistillationExperts(4, 8, 30, weight_floor=floor)
