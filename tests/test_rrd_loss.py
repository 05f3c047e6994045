"""RRD loss against a brute-force Plackett-Luce computation (docs/method.md, RRD)."""

import torch

from recbole_derrd.model.rrd import rrd_loss

from helpers import brute_force_rrd


def test_matches_brute_force_plackett_luce():
    generator = torch.Generator().manual_seed(0)
    for n_users, k, l in [(1, 1, 1), (5, 4, 3), (7, 10, 20), (3, 6, 1)]:
        interesting = torch.randn(n_users, k, generator=generator, dtype=torch.float64) * 3
        uninteresting = torch.randn(n_users, l, generator=generator, dtype=torch.float64) * 3
        expected = brute_force_rrd(interesting, uninteresting)
        actual = rrd_loss(interesting, uninteresting)
        assert actual.shape == (n_users,)
        torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


def test_order_of_uninteresting_items_is_ignored_but_interesting_order_matters():
    generator = torch.Generator().manual_seed(1)
    interesting = torch.randn(4, 5, generator=generator)
    uninteresting = torch.randn(4, 6, generator=generator)
    base = rrd_loss(interesting, uninteresting)
    torch.testing.assert_close(rrd_loss(interesting, uninteresting.flip(-1)), base)
    assert not torch.allclose(rrd_loss(interesting.flip(-1), uninteresting), base)


def test_loss_prefers_the_teacher_order():
    ordered = torch.tensor([[5.0, 4.0, 3.0, 2.0]])
    reversed_order = ordered.flip(-1)
    uninteresting = torch.tensor([[0.0, -1.0]])
    assert rrd_loss(ordered, uninteresting) < rrd_loss(reversed_order, uninteresting)


def test_stays_finite_for_scores_of_magnitude_1e4():
    interesting = torch.tensor([[1e4, -1e4, 5e3], [-1e4, 1e4, 0.0]], requires_grad=True)
    uninteresting = torch.tensor([[1e4, 2e4], [-2e4, 1e4]], requires_grad=True)
    loss = rrd_loss(interesting, uninteresting)
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(interesting.grad).all() and torch.isfinite(uninteresting.grad).all()


def test_large_scores_give_the_exact_loss():
    """Plackett-Luce is shift-invariant: scores around 1e4 must give the loss of the same
    scores around 0 (a raw exp would overflow to inf/nan here)."""
    generator = torch.Generator().manual_seed(2)
    interesting = torch.randn(6, 5, generator=generator)
    uninteresting = torch.randn(6, 7, generator=generator)
    expected = brute_force_rrd(interesting.double(), uninteresting.double()).float()
    shifted = rrd_loss(interesting + 1e4, uninteresting + 1e4)
    torch.testing.assert_close(shifted, expected, rtol=1e-3, atol=1e-2)


def test_fast_reverse_logcumsumexp_equals_torch_including_extreme_rows():
    from recbole_derrd.model.rrd import reverse_logcumsumexp

    generator = torch.Generator().manual_seed(3)
    ordinary = torch.randn(50, 12, generator=generator) * 4
    extreme = torch.tensor([[1e4, -1e4, 5e3, 0.0], [-300.0, 0.0, -200.0, 100.0]])
    for scores in (ordinary, extreme, torch.cat([ordinary[:, :4], extreme])):
        fast_input = scores.clone().requires_grad_(True)
        exact_input = scores.clone().requires_grad_(True)
        fast = reverse_logcumsumexp(fast_input)
        exact = torch.logcumsumexp(exact_input.flip(-1), dim=-1).flip(-1)
        torch.testing.assert_close(fast, exact)
        weights = torch.rand(scores.shape, generator=generator)
        (fast * weights).sum().backward()
        (exact * weights).sum().backward()
        assert torch.isfinite(fast_input.grad).all()
        torch.testing.assert_close(fast_input.grad, exact_input.grad)
