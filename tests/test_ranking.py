"""Teacher top-N and RRD sampling (docs/method.md, RRD): exclusions, chunking, distributions."""

import itertools

import pytest
import torch
from scipy import stats

from recbole_derrd.teacher.ranking import (
    UninterestingSampler,
    rank_discount_weights,
    sample_interesting,
    teacher_topn,
)


def random_training_split(n_users, n_items, max_items, seed):
    """CSR training split with sorted distinct items in 1..n_items-1 (0 is padding)."""
    generator = torch.Generator().manual_seed(seed)
    indptr, items = [0], []
    for _ in range(n_users):
        count = int(torch.randint(0, max_items + 1, (1,), generator=generator))
        chosen = torch.randperm(n_items - 1, generator=generator)[:count] + 1
        items.extend(sorted(chosen.tolist()))
        indptr.append(len(items))
    return torch.tensor(indptr), torch.tensor(items, dtype=torch.long)


def brute_force_topn(scores, indptr, items, topn):
    result = []
    for user in range(scores.shape[0]):
        excluded = {0} | set(items[indptr[user] : indptr[user + 1]].tolist())
        ranked = [i for i in scores[user].argsort(descending=True).tolist() if i not in excluded]
        result.append(ranked[:topn])
    return torch.tensor(result)


@pytest.fixture
def toy_split():
    n_users, n_items, topn = 37, 60, 12
    indptr, items = random_training_split(n_users, n_items, max_items=25, seed=0)
    scores = torch.randn(n_users, n_items, generator=torch.Generator().manual_seed(1))
    return n_users, n_items, topn, indptr, items, scores


@pytest.mark.parametrize("chunk_users", [1, 5, 37, 1000])
def test_chunked_topn_equals_brute_force(toy_split, chunk_users):
    n_users, n_items, topn, indptr, items, scores = toy_split
    result = teacher_topn(
        lambda users: scores[users], n_users, n_items, indptr, items, topn, chunk_users, "cpu"
    )
    assert torch.equal(result, brute_force_topn(scores, indptr, items, topn))


def test_topn_never_holds_a_training_item_or_the_padding_id(toy_split):
    n_users, n_items, topn, indptr, items, scores = toy_split
    scores[:, 0] = 1e9  # the padding id scores best: it must still be excluded
    scores[torch.arange(n_users), items[indptr[:-1].clamp(max=len(items) - 1)]] = 1e8
    result = teacher_topn(lambda users: scores[users], n_users, n_items, indptr, items, topn, 4, "cpu")
    for user in range(n_users):
        train = set(items[indptr[user] : indptr[user + 1]].tolist())
        assert not (set(result[user].tolist()) & (train | {0}))
        assert len(set(result[user].tolist())) == topn


def exact_inclusion_probabilities(weights, k):
    """P(position i among k draws without replacement), by enumerating ordered draws."""
    weights = [float(w) for w in weights]
    inclusion = [0.0] * len(weights)
    for sequence in itertools.permutations(range(len(weights)), k):
        probability, remaining = 1.0, sum(weights)
        for position in sequence:
            probability *= weights[position] / remaining
            remaining -= weights[position]
        for position in sequence:
            inclusion[position] += probability
    return torch.tensor(inclusion)


def test_interesting_positions_are_distinct_sorted_and_inside_topn():
    generator = torch.Generator().manual_seed(3)
    positions = sample_interesting(2000, 500, 40, 10.0, generator, chunk_users=300)
    assert positions.shape == (2000, 40)
    assert positions.min() >= 0 and positions.max() < 500
    assert (positions[:, 1:] > positions[:, :-1]).all()  # strictly increasing: distinct, sorted


def test_single_interesting_item_follows_rank_discount():
    """K = 1: the rank of the draw has probability exp(-rank/T) / sum (chi-square test)."""
    topn, temperature, draws = 20, 5.0, 100000
    positions = sample_interesting(draws, topn, 1, temperature, torch.Generator().manual_seed(4))
    observed = torch.bincount(positions[:, 0], minlength=topn).double()
    weights = rank_discount_weights(topn, temperature).double()
    expected = weights / weights.sum() * draws
    statistic, p_value = stats.chisquare(observed.numpy(), expected.numpy())
    assert p_value > 1e-3, (statistic, p_value)


def test_interesting_items_follow_sampling_without_replacement():
    """K = 3 of N = 6: empirical inclusion frequency of every rank equals the exact
    probability of successive sampling with weights exp(-rank/T), within 0.005 (the standard
    error with 200,000 users is below 0.0012)."""
    topn, k, temperature, users = 6, 3, 2.0, 200000
    positions = sample_interesting(users, topn, k, temperature, torch.Generator().manual_seed(5))
    observed = torch.bincount(positions.reshape(-1), minlength=topn).double() / users
    expected = exact_inclusion_probabilities(rank_discount_weights(topn, temperature), k)
    assert (observed - expected.double()).abs().max() < 0.005


def test_uninteresting_items_avoid_train_and_topn_and_are_uniform(toy_split):
    n_users, n_items, topn, indptr, items, scores = toy_split
    top = teacher_topn(lambda users: scores[users], n_users, n_items, indptr, items, topn, 8, "cpu")
    sampler = UninterestingSampler(indptr, items, top, n_items)
    draws = 6000
    sampled = sampler.sample(draws, torch.Generator().manual_seed(6))
    assert sampled.shape == (n_users, draws)
    for user in range(n_users):
        excluded = {0} | set(items[indptr[user] : indptr[user + 1]].tolist()) | set(top[user].tolist())
        allowed = sorted(set(range(n_items)) - excluded)
        assert int(sampler.available[user]) == len(allowed)
        values = set(sampled[user].tolist())
        assert not (values & excluded)
        counts = torch.bincount(sampled[user], minlength=n_items)[allowed].double()
        _, p_value = stats.chisquare(counts.numpy())
        assert p_value > 1e-4, (user, p_value)


def test_small_rank_temperatures_do_not_underflow():
    """T = 0.1: exp(-rank / T) is 0 in float32 beyond rank ~10, yet 40 distinct ranks must come
    out, almost surely the first 40 in order (each next rank is e^10 times likelier than the
    one after it), and not the same arbitrary zero-weight ranks for every user."""
    positions = sample_interesting(5000, 500, 40, 0.1, torch.Generator().manual_seed(7))
    assert (positions[:, 1:] > positions[:, :-1]).all()
    exact = (positions == torch.arange(40)).all(dim=1).float().mean()
    assert exact > 0.99 and positions.max() < 60
