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
- :class:`SeedBootstrap`: the same bootstrap of many series at once (every method and metric
  of a table), one draw of seeds and users shared by all, so that any two are paired and a
  report's many comparisons cost about one: a resample's means are its users' draw counts
  times the series (:func:`resampled_means`).

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


def resampled_means(columns, count, rng):
    """``count`` bootstrap means of the rows (users) of ``columns`` (users x columns), each
    resample's users drawn with replacement and shared by every column (paired): an array
    ``count x columns``. A resample's mean is its users' draw counts times the columns, over
    the users: one draw of the users serves every column (every method and metric of a table)."""
    users = len(columns)
    block = max(1, DRAW_BLOCK // users)
    means = np.empty((count, columns.shape[1]))
    for first in range(0, count, block):
        rows = min(count, first + block) - first
        picks = rng.integers(0, users, size=(rows, users), dtype=np.int64)
        picks += np.arange(rows)[:, None] * users  # one bin per (resample, user)
        draws = np.bincount(picks.ravel(), minlength=rows * users).reshape(rows, users)
        means[first:first + rows] = draws @ columns / users
    return means


class SeedBootstrap:
    """The two-level bootstrap of several series at once (e.g. every method of a table at
    every metric), the same draws for all of them, so that any two are paired.

    Args:
        series (dict): name -> {seed: per-user values}; every series has the same seeds, and
            within a seed the same users in the same order.
        resamples (int): the resamples of each distribution.
        random_state (int): the draws' seed; the draws depend only on it, ``resamples``, the
            seeds and their numbers of users, not on the series.

    Each resample draws as many seeds as there are, with replacement, then within each drawn
    seed as many users as it has, with replacement, a fresh draw for every time a seed is
    drawn. The users-only resamples (every seed once) take the same seeds' draws.
    """

    def __init__(self, series, resamples=10000, random_state=0):
        if not series:
            raise ValueError("no series to resample")
        self.names = list(series)
        self.seeds = sorted(next(iter(series.values())))
        self.resamples = resamples
        for name, by_seed in series.items():
            if sorted(by_seed) != self.seeds:
                raise ValueError(f"{name}: seeds {sorted(by_seed)}, not {self.seeds}")
            for seed in self.seeds:
                if np.shape(by_seed[seed]) != np.shape(next(iter(series.values()))[seed]):
                    raise ValueError(f"{name}, seed {seed}: {np.shape(by_seed[seed])} per-user values, "
                                     f"not {np.shape(next(iter(series.values()))[seed])}")
        #: name -> {seed: the series' mean over the seed's users}.
        self.means = {name: {seed: float(np.mean(by_seed[seed])) for seed in self.seeds}
                      for name, by_seed in series.items()}
        rng = np.random.default_rng(random_state)
        drawn = rng.integers(0, len(self.seeds), size=(resamples, len(self.seeds)))
        #: Per resample, the sum over the drawn seeds of each series' resampled mean.
        self.seed_totals = np.zeros((resamples, len(self.names)))
        #: Per resample, the sum over every seed (once) of each series' resampled mean.
        self.user_totals = np.zeros((resamples, len(self.names)))
        for index, seed in enumerate(self.seeds):
            columns = np.column_stack([np.asarray(series[name][seed], dtype=float) for name in self.names])
            if columns.ndim != 2 or not len(columns):
                raise ValueError(f"seed {seed}: no per-user values")
            rows, _ = np.nonzero(drawn == index)  # one row per time this seed was drawn
            means = resampled_means(columns, max(len(rows), resamples), rng)
            np.add.at(self.seed_totals, rows, means[:len(rows)])
            self.user_totals += means[:resamples]

    def differences(self, method, baseline, resample_seeds=True):
        """The bootstrap distribution (``resamples`` values, %) of ``method``'s relative
        difference to ``baseline`` (:func:`relative_difference`)."""
        totals = self.seed_totals if resample_seeds else self.user_totals
        first, second = self.names.index(method), self.names.index(baseline)
        return relative_change(totals[:, first], totals[:, second])  # the 1/seeds of both means cancels

    def interval(self, method, baseline, confidence=0.95, resample_seeds=True):
        """The percentile ``confidence`` interval ``(low, high)`` (%) of :meth:`differences`."""
        return percentile_interval(self.differences(method, baseline, resample_seeds), confidence)

    def compare(self, method, baseline, confidence=0.95):
        """Every figure of ``method`` against ``baseline`` (:class:`SeedComparison`)."""
        means, reference = self.means[method], self.means[baseline]
        return SeedComparison(
            relative=float(relative_change(np.mean(list(means.values())), np.mean(list(reference.values())))),
            per_seed={seed: float(relative_change(means[seed], reference[seed])) for seed in self.seeds},
            interval=self.interval(method, baseline, confidence),
            user_interval=self.interval(method, baseline, confidence, resample_seeds=False),
            confidence=confidence,
            resamples=self.resamples,
        )


def percentile_interval(differences, confidence):
    """The central ``confidence`` interval ``(low, high)`` of a bootstrap distribution."""
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.nanpercentile(differences, [tail, 100.0 - tail])
    return float(low), float(high)


def pair_bootstrap(method, baseline, resamples, random_state):
    """A :class:`SeedBootstrap` of two series (named ``method`` and ``baseline``), checked."""
    pairs = _paired_arrays(method, baseline)
    return SeedBootstrap({"method": {seed: values for seed, values, _ in pairs},
                          "baseline": {seed: reference for seed, _, reference in pairs}},
                         resamples, random_state)


def bootstrap_differences(method, baseline, resamples=10000, random_state=0, resample_seeds=True):
    """The bootstrap distribution of :func:`relative_difference`: ``resamples`` values (%)
    (:class:`SeedBootstrap`; ``resample_seeds`` False: every seed once, its users resampled)."""
    return pair_bootstrap(method, baseline, resamples, random_state).differences(
        "method", "baseline", resample_seeds)


def hierarchical_bootstrap_interval(method, baseline, confidence=0.95, resamples=10000,
                                    random_state=0, resample_seeds=True):
    """A percentile ``confidence`` interval ``(low, high)`` (%) of :func:`relative_difference`
    from :func:`bootstrap_differences` (seeds, then users within each seed)."""
    differences = bootstrap_differences(method, baseline, resamples, random_state, resample_seeds)
    return percentile_interval(differences, confidence)


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
    return pair_bootstrap(method, baseline, resamples, random_state).compare("method", "baseline", confidence)
