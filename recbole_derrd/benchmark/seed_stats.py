"""
recbole_derrd.benchmark.seed_stats
##################################
Statistics of a comparison over seeds: a method against a baseline (e.g. a distiller against
the student alone), each run at several seeds (a seed is a split, an initialisation and a
training), each seed's test users scored by both.

A test over the users alone treats one training per method as if it were the method: with
many users it calls a difference "significant" that another seed reverses. Here:

- :func:`per_seed_differences`: each seed's relative difference of the mean metric (%), the
  spread a reader should see next to the mean.
- :func:`relative_difference`: the headline figure, the relative difference (%) of the
  methods' means over seeds (every seed weighs the same; each seed's mean is over its users).
- :func:`hierarchical_bootstrap_interval`: a percentile interval of that figure under a
  two-level bootstrap: the seeds resampled with replacement, then within every drawn seed its
  users with replacement, paired (a drawn user counts for both methods), so that it accounts
  for the variance between seeds as well as between users. ``resample_seeds=False`` resamples
  the users alone (within their seeds), the interval a user-level test would give.
- :func:`is_significant`: whether an interval excludes 0, the meaning of "significant" in a
  headline; :func:`compare_over_seeds` gives all of it at once (:class:`SeedComparison`).

Pure functions of the per-user metrics (NumPy only), seeded for reproducibility.
"""

import dataclasses

import numpy as np

#: Most user indices drawn at once (bounds the memory of a bootstrap on large test sets).
DRAW_BLOCK = 4_000_000


def _paired_arrays(method, baseline):
    """``[(seed, method values, baseline values)]`` in seed order, checked: the same seeds on
    both sides, the same (non-zero) number of users within each seed."""
    if set(method) != set(baseline):
        raise ValueError(f"seeds differ: {sorted(method)} vs {sorted(baseline)}")
    if not method:
        raise ValueError("no seed to compare")
    pairs = []
    for seed in sorted(method):
        values = np.asarray(method[seed], dtype=float)
        reference = np.asarray(baseline[seed], dtype=float)
        if values.ndim != 1 or values.shape != reference.shape or not len(values):
            raise ValueError(f"seed {seed}: {values.shape} vs {reference.shape} per-user values")
        pairs.append((seed, values, reference))
    return pairs


def relative_change(value, reference):
    """``100 * (value - reference) / |reference|`` (NaN where the reference is 0)."""
    value, reference = np.asarray(value, dtype=float), np.asarray(reference, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        change = 100.0 * (value - reference) / np.abs(reference)
    return np.where(reference == 0, np.nan, change)


def per_seed_differences(method, baseline):
    """Each seed's relative difference (%) of the method's mean metric over its users to the
    baseline's: ``{seed: 100 * (mean(method[seed]) - mean(baseline[seed])) / mean(baseline[seed])}``.

    Args:
        method (dict): seed -> per-user metric values of the method.
        baseline (dict): seed -> the baseline's values of the same users, in the same order.
    """
    return {seed: float(relative_change(values.mean(), reference.mean()))
            for seed, values, reference in _paired_arrays(method, baseline)}


def relative_difference(method, baseline):
    """The relative difference (%) of the method's mean over seeds (of its per-seed means over
    users) to the baseline's: what a table's "vs baseline" column reports."""
    pairs = _paired_arrays(method, baseline)
    method_mean = np.mean([values.mean() for _, values, _ in pairs])
    baseline_mean = np.mean([reference.mean() for _, _, reference in pairs])
    return float(relative_change(method_mean, baseline_mean))


def _resampled_user_means(values, reference, count, rng):
    """``count`` bootstrap means of the users of one seed, the same users drawn for both
    arrays: two arrays of length ``count``."""
    users = len(values)
    block = max(1, DRAW_BLOCK // users)
    method_means, baseline_means = np.empty(count), np.empty(count)
    for first in range(0, count, block):
        last = min(count, first + block)
        picks = rng.integers(0, users, size=(last - first, users))
        method_means[first:last] = values[picks].mean(axis=1)
        baseline_means[first:last] = reference[picks].mean(axis=1)
    return method_means, baseline_means


def bootstrap_differences(method, baseline, resamples=10000, random_state=0, resample_seeds=True):
    """The bootstrap distribution of :func:`relative_difference`: ``resamples`` values (%).

    Each resample draws as many seeds as there are, with replacement (``resample_seeds``;
    False: every seed once), then within each drawn seed as many users as it has, with
    replacement, a fresh draw for every time a seed is drawn; the method's and the baseline's
    values of a drawn user are taken together (paired).
    """
    pairs = _paired_arrays(method, baseline)
    rng = np.random.default_rng(random_state)
    seeds = len(pairs)
    if resample_seeds:
        drawn = rng.integers(0, seeds, size=(resamples, seeds))
    else:
        drawn = np.broadcast_to(np.arange(seeds), (resamples, seeds))
    method_totals, baseline_totals = np.zeros(resamples), np.zeros(resamples)
    for index, (_, values, reference) in enumerate(pairs):
        rows, _ = np.nonzero(drawn == index)  # one row per time this seed was drawn
        method_means, baseline_means = _resampled_user_means(values, reference, len(rows), rng)
        np.add.at(method_totals, rows, method_means)
        np.add.at(baseline_totals, rows, baseline_means)
    return relative_change(method_totals, baseline_totals)  # the 1/seeds of both means cancels


def hierarchical_bootstrap_interval(method, baseline, confidence=0.95, resamples=10000,
                                    random_state=0, resample_seeds=True):
    """A percentile ``confidence`` interval ``(low, high)`` (%) of :func:`relative_difference`
    from :func:`bootstrap_differences` (seeds, then users within each seed)."""
    differences = bootstrap_differences(method, baseline, resamples, random_state, resample_seeds)
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.nanpercentile(differences, [tail, 100.0 - tail])
    return float(low), float(high)


def is_significant(interval):
    """Whether the interval ``(low, high)`` excludes 0 (both ends on the same side of it)."""
    low, high = interval
    return bool(low > 0 or high < 0)


@dataclasses.dataclass
class SeedComparison:
    """A method against a baseline over seeds (figures in %, relative to the baseline)."""

    #: :func:`relative_difference`, the headline figure.
    relative: float
    #: :func:`per_seed_differences`.
    per_seed: dict
    #: :func:`hierarchical_bootstrap_interval` (seeds and users resampled).
    interval: tuple
    #: The interval with the users resampled within their seeds only (seed variance ignored).
    user_interval: tuple
    confidence: float
    resamples: int

    @property
    def significant(self):
        """The seed-aware interval excludes 0."""
        return is_significant(self.interval)


def compare_over_seeds(method, baseline, confidence=0.95, resamples=10000, random_state=0):
    """Every figure of a comparison over seeds (:class:`SeedComparison`); inputs as
    :func:`per_seed_differences`."""
    bounds = dict(confidence=confidence, resamples=resamples, random_state=random_state)
    return SeedComparison(
        relative=relative_difference(method, baseline),
        per_seed=per_seed_differences(method, baseline),
        interval=hierarchical_bootstrap_interval(method, baseline, **bounds),
        user_interval=hierarchical_bootstrap_interval(method, baseline, resample_seeds=False, **bounds),
        confidence=confidence,
        resamples=resamples,
    )
