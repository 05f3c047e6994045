"""Issue 38, item 1: statistics of a comparison over seeds (recbole_derrd/benchmark/seed_stats.py),
checked against exact enumeration, analytic cases and coverage on synthetic data."""

import itertools

import numpy as np
import pytest

from recbole_derrd.benchmark.seed_stats import (
    bootstrap_differences,
    compare_over_seeds,
    hierarchical_bootstrap_interval,
    is_significant,
    per_seed_differences,
    relative_difference,
)


def users(rng, count, mean=0.2):
    return np.clip(rng.normal(mean, 0.1, count), 0, 1)


def test_identical_methods_differ_by_nothing():
    rng = np.random.default_rng(0)
    baseline = {seed: users(rng, 50) for seed in (2020, 2021, 2022)}
    method = {seed: values.copy() for seed, values in baseline.items()}
    comparison = compare_over_seeds(method, baseline, resamples=500)
    assert comparison.per_seed == {2020: 0.0, 2021: 0.0, 2022: 0.0}
    assert comparison.relative == 0.0
    assert comparison.interval == (0.0, 0.0) and comparison.user_interval == (0.0, 0.0)
    assert not comparison.significant


def test_a_constant_relative_shift_on_every_user_and_seed_is_the_interval():
    """Every resample of users and seeds then differs by exactly that shift."""
    rng = np.random.default_rng(1)
    baseline = {seed: users(rng, 80) + 0.05 for seed in range(4)}
    method = {seed: 1.1 * values for seed, values in baseline.items()}
    comparison = compare_over_seeds(method, baseline, resamples=500)
    assert comparison.per_seed == pytest.approx({seed: 10.0 for seed in range(4)})
    assert comparison.relative == pytest.approx(10.0)
    assert comparison.interval == pytest.approx((10.0, 10.0))
    assert comparison.significant


def test_seeds_that_disagree_in_sign_are_not_significant_however_many_users():
    """Gowalla's DE-RRD: +3.0%, -3.4%, -1.6% at three seeds. The users alone would call the
    mean (-0.67%) significant; the seeds say it could be either sign."""
    rng = np.random.default_rng(2)
    shifts = {2020: 0.030, 2021: -0.034, 2022: -0.016}
    baseline, method = {}, {}
    for seed, shift in shifts.items():
        baseline[seed] = users(rng, 5000) + 0.05
        noise = rng.normal(0, 0.02, 5000)
        method[seed] = baseline[seed] * (1 + shift) + noise - noise.mean()
    comparison = compare_over_seeds(method, baseline, resamples=1000)
    assert comparison.per_seed == pytest.approx({seed: 100 * shift for seed, shift in shifts.items()})
    assert comparison.relative == pytest.approx(100 * np.mean(list(shifts.values())), abs=0.05)
    assert is_significant(comparison.user_interval) and comparison.user_interval[1] < 0
    low, high = comparison.interval
    assert low < -3.0 and high > 2.5 and not comparison.significant


def exact_distribution(method, baseline, resample_seeds=True):
    """Every outcome of the two-level bootstrap, equally likely: the drawn seeds (ordered, with
    replacement), then each drawn seed's users (ordered, with replacement)."""
    seeds = sorted(method)
    seed_draws = itertools.product(seeds, repeat=len(seeds)) if resample_seeds else [tuple(seeds)]
    outcomes = []
    for drawn in seed_draws:
        user_draws = [itertools.product(range(len(method[seed])), repeat=len(method[seed])) for seed in drawn]
        for picks in itertools.product(*[list(draw) for draw in user_draws]):
            method_total = sum(np.mean(method[seed][list(pick)]) for seed, pick in zip(drawn, picks))
            baseline_total = sum(np.mean(baseline[seed][list(pick)]) for seed, pick in zip(drawn, picks))
            outcomes.append(100 * (method_total - baseline_total) / baseline_total)
    return np.sort(outcomes)


@pytest.mark.parametrize("resample_seeds", [True, False])
def test_the_bootstrap_distribution_is_the_exact_one(resample_seeds):
    """Two seeds of three users: 4 x 27 x 27 equally likely outcomes, enumerated."""
    method = {1: np.array([0.5, 0.2, 0.0]), 2: np.array([0.3, 0.3, 0.1])}
    baseline = {1: np.array([0.4, 0.1, 0.2]), 2: np.array([0.2, 0.5, 0.3])}
    exact = exact_distribution(method, baseline, resample_seeds)
    drawn = np.sort(bootstrap_differences(method, baseline, resamples=40000, random_state=3,
                                          resample_seeds=resample_seeds))
    # the two distribution functions, at every exact outcome (outcomes tied in exact arithmetic
    # are computed in other orders: within 1e-9 they are the same outcome)
    exact_cdf = np.searchsorted(exact, exact + 1e-9, side="right") / len(exact)
    drawn_cdf = np.searchsorted(drawn, exact + 1e-9, side="right") / len(drawn)
    assert np.max(np.abs(exact_cdf - drawn_cdf)) < 0.012
    assert drawn.mean() == pytest.approx(exact.mean(), abs=0.01 * exact.std())


def hierarchical_data(rng, seeds, count, shift=0.01, seed_spread=0.01):
    """Per-user metrics at ``seeds`` seeds: each seed's baseline level and the method's gain
    vary between seeds (``seed_spread``), users vary within one. The true relative gain is
    100 * shift / 0.2 = 5%."""
    method, baseline = {}, {}
    for seed in range(seeds):
        values = rng.normal(0.2, 0.01) + rng.normal(0, 0.1, count)
        baseline[seed] = values
        method[seed] = values + rng.normal(shift, seed_spread) + rng.normal(0, 0.1, count)
    return method, baseline


def test_the_interval_covers_the_true_difference_and_the_users_alone_do_not():
    """100 synthetic benchmarks of 5 seeds x 200 users, the gain spread between seeds: the
    seed-aware 95% interval holds the true gain in about 95% of them (92 here); the users-only
    interval, blind to the seeds' spread, in far fewer (57)."""
    rng = np.random.default_rng(4)
    covered = {True: 0, False: 0}
    for replicate in range(100):
        method, baseline = hierarchical_data(rng, seeds=5, count=200, seed_spread=0.02)
        for resample_seeds in covered:
            low, high = hierarchical_bootstrap_interval(method, baseline, resamples=300,
                                                        random_state=replicate, resample_seeds=resample_seeds)
            covered[resample_seeds] += low <= 5.0 <= high
    assert 85 <= covered[True] <= 100
    assert covered[False] <= 70


def test_the_bootstrap_is_reproducible_and_seeded():
    rng = np.random.default_rng(5)
    method, baseline = hierarchical_data(rng, seeds=3, count=100)
    first = hierarchical_bootstrap_interval(method, baseline, resamples=300, random_state=7)
    assert hierarchical_bootstrap_interval(method, baseline, resamples=300, random_state=7) == first
    assert hierarchical_bootstrap_interval(method, baseline, resamples=300, random_state=8) != first


def test_the_headline_weighs_every_seed_the_same():
    method = {1: np.array([0.3]), 2: np.array([0.1, 0.1, 0.1])}
    baseline = {1: np.array([0.2]), 2: np.array([0.2, 0.2, 0.2])}
    assert per_seed_differences(method, baseline) == pytest.approx({1: 50.0, 2: -50.0})
    assert relative_difference(method, baseline) == pytest.approx(0.0)


@pytest.mark.parametrize("method, baseline, message", [
    ({1: [0.1]}, {2: [0.1]}, "seeds differ"),
    ({1: [0.1, 0.2]}, {1: [0.1]}, "seed 1"),
    ({}, {}, "no seed"),
    ({1: []}, {1: []}, "seed 1"),
])
def test_unpaired_inputs_are_refused(method, baseline, message):
    with pytest.raises(ValueError, match=message):
        relative_difference(method, baseline)


def test_significance_is_an_interval_that_excludes_zero():
    assert is_significant((0.1, 2.0)) and is_significant((-3.0, -0.2))
    assert not is_significant((-0.1, 2.0)) and not is_significant((0.0, 1.0))
