"""
recbole_derrd.benchmark.significance
####################################
The comparisons between two rows of a table, from the per-user metrics of the two models'
rankings of each test user (the same users at each seed):

- :class:`Comparisons`: every comparison a report or the summary makes, over seeds
  (:mod:`.seed_stats`): the relative difference of the rows' means over the seeds both have,
  each seed's difference, and a 95% interval from a hierarchical bootstrap (seeds, then each
  drawn seed's users) -- "significant" means that interval excludes 0. Secondary, over the
  users alone: the interval with the users resampled within their seeds, and the p of a
  Wilcoxon signed-rank test of the per-user differences, every seed's users pooled. One
  bootstrap per table serves all its comparisons (:class:`~.seed_stats.SeedBootstrap`).
- :func:`paired_difference`: the former user-level test alone (the mean difference, its
  Wilcoxon p and a users-only bootstrap interval).
"""

import dataclasses

import numpy as np

from recbole_derrd.benchmark.cells import PER_USER, PER_USER_METRICS
from recbole_derrd.benchmark.methods import DISTILLERS, METHODS
from recbole_derrd.benchmark.seed_stats import SeedBootstrap, is_significant

#: Resamples of every bootstrap of a comparison.
RESAMPLES = 10000
#: The confidence of the intervals.
CONFIDENCE = 0.95


def paired_difference(cells, baseline_cells, metric, resamples=10000, seed=0):
    """Mean per-user difference of ``metric`` (cells minus baseline cells), pooled over the
    seeds both have, with a Wilcoxon signed-rank p-value and a bootstrap 95% interval (users
    resampled within each seed). None when no seed has per-user values on both sides."""
    differences, baseline_values = paired_values(cells, baseline_cells, metric)
    if not differences:
        return None
    pooled = np.concatenate(differences)
    low, high = bootstrap_interval(differences, len(pooled), resamples, seed)
    p_value = wilcoxon_p(pooled)
    return {"mean": float(pooled.mean()), "low": float(low), "high": float(high), "p": p_value,
            "users": len(pooled), "seeds": len(differences),
            "baseline_mean": float(np.concatenate(baseline_values).mean())}


def paired_values(cells, baseline_cells, metric):
    """Per seed both sides have per-user ``metric`` values of: the differences (cell minus
    baseline) and the baseline's values, as float64 arrays."""
    baseline_by_seed = {cell["seed"]: cell for cell in baseline_cells}
    differences, baseline_values = [], []
    for cell in cells:
        baseline = baseline_by_seed.get(cell["seed"])
        if baseline is None or metric not in cell.get(PER_USER, {}) or metric not in baseline.get(PER_USER, {}):
            continue
        values = np.asarray(cell[PER_USER][metric])
        reference = np.asarray(baseline[PER_USER][metric])
        if values.shape != reference.shape:
            raise ValueError(f"seed {cell['seed']}: {len(values)} vs {len(reference)} test users")
        differences.append(values - reference)
        baseline_values.append(reference)
    return differences, baseline_values


def bootstrap_interval(differences, users, resamples, seed):
    """The 95% percentile interval of the mean of ``differences`` (one array per seed, ``users``
    in all) over ``resamples`` resamplings of the users within each seed."""
    rng = np.random.default_rng(seed)
    totals = np.zeros(resamples)
    for group in differences:  # one resampling per seed (users stay in their split)
        for first in range(0, resamples, 1000):  # bounded memory on large test sets
            count = min(1000, resamples - first)
            picks = rng.integers(0, len(group), size=(count, len(group)))
            totals[first:first + count] += group[picks].sum(axis=1)
    means = totals / users
    return np.percentile(means, [2.5, 97.5])


def wilcoxon_p(differences):
    """The p of a Wilcoxon signed-rank test of ``differences`` (users with no difference left
    out; 1 when every user has none)."""
    from scipy.stats import wilcoxon

    return float(wilcoxon(differences).pvalue) if np.any(differences != 0) else 1.0


@dataclasses.dataclass
class Comparison:
    """One row against another on one metric, over the seeds both have (figures in %,
    relative to the baseline's mean)."""

    method: str
    baseline: str
    metric: str
    seeds: list
    #: The relative difference of the means over seeds (each seed's mean over its users).
    relative: float
    #: seed -> that seed's relative difference.
    per_seed: dict
    #: The 95% interval over seeds and users; None with one seed (the seeds' variance unmeasured).
    interval: tuple
    #: The 95% interval with the users alone resampled (within their seeds).
    user_interval: tuple
    #: Wilcoxon signed-rank p of the per-user differences, every seed's users pooled.
    p: float

    @property
    def significant(self):
        """The interval over seeds and users excludes 0 (never with one seed)."""
        return self.interval is not None and is_significant(self.interval)


class Comparisons:
    """The comparisons between the reported rows of one table (``plan``: its
    :class:`~recbole_derrd.benchmark.plan.Plan`), each made once (:attr:`made`, in order).

    One :class:`~.seed_stats.SeedBootstrap` per size and set of seeds, of every row and
    per-user metric the table has there, built at the first comparison that needs it."""

    def __init__(self, plan, resamples=RESAMPLES, random_state=0):
        self.plan = plan
        self.resamples = resamples
        self.random_state = random_state
        self.bootstraps = {}
        #: (method, baseline, size, metric) -> its :class:`Comparison` (None: no pair).
        self.made = {}

    def compare(self, method, baseline, size, metric):
        """``method`` against ``baseline`` (rows of ``size``) on ``metric``: a :class:`Comparison`
        over the seeds where both have per-user values, or None where no seed has them."""
        key = (method, baseline, size, metric)
        if key not in self.made:
            self.made[key] = self.comparison(method, baseline, size, metric)
        return self.made[key]

    def count(self):
        """How many comparisons were made (those with a pair)."""
        return sum(comparison is not None for comparison in self.made.values())

    def per_user(self, method, size, metric):
        """{seed: per-user ``metric``} of ``method``'s reported cells of ``size`` that have it."""
        return {cell["seed"]: cell[PER_USER][metric] for cell in self.plan.reported_cells(method, size)
                if metric in cell.get(PER_USER, {})}

    def comparison(self, method, baseline, size, metric):
        values, reference = self.per_user(method, size, metric), self.per_user(baseline, size, metric)
        seeds = sorted(set(values) & set(reference))
        if not seeds:
            return None
        for seed in seeds:
            if len(values[seed]) != len(reference[seed]):
                raise ValueError(f"seed {seed}: {len(values[seed])} vs {len(reference[seed])} test users")
        bootstrap = self.bootstrap(size, tuple(seeds))
        figures = bootstrap.compare((method, metric), (baseline, metric), CONFIDENCE)
        differences = np.concatenate([np.asarray(values[seed]) - np.asarray(reference[seed]) for seed in seeds])
        return Comparison(method, baseline, metric, seeds, figures.relative, figures.per_seed,
                          figures.interval if len(seeds) > 1 else None, figures.user_interval,
                          wilcoxon_p(differences))

    def bootstrap(self, size, seeds):
        """The bootstrap of every (row, metric) of ``size`` with per-user values at all of
        ``seeds`` (the same users at each seed)."""
        if (size, seeds) not in self.bootstraps:
            series = {}
            for method in METHODS:
                for metric in PER_USER_METRICS:
                    values = self.per_user(method, size, metric)
                    if all(seed in values for seed in seeds):
                        series[(method, metric)] = {seed: values[seed] for seed in seeds}
            self.bootstraps[(size, seeds)] = SeedBootstrap(series, self.resamples, self.random_state)
        return self.bootstraps[(size, seeds)]


def per_seed_text(comparison):
    """Each seed's relative difference, in seed order: ``+3.0 / -3.4 / -1.6`` (%)."""
    return " / ".join(f"{value:+.1f}" for _, value in sorted(comparison.per_seed.items()))


def bound_text(value):
    """``+2.8%``; an end that rounds to 0.0 but is not 0 with two significant digits (``+0.031%``),
    so that its side of 0 shows."""
    text = f"{value:+.1f}"
    return (f"{value:+.2g}" if value and float(text) == 0 else text) + "%"


def interval_text(interval):
    """``[-3.5%, +2.8%]``."""
    return f"[{bound_text(interval[0])}, {bound_text(interval[1])}]"


def verdict_text(comparison):
    """``yes`` where the interval over seeds and users excludes 0, ``no``, or ``one seed``."""
    if comparison.interval is None:
        return "one seed"
    return "yes" if comparison.significant else "no"


def versus_text(comparison):
    """A comparison in one cell of a table: ``+6.1% (+4.0 / +8.0 / +6.3; [+2.1%, +9.9%],
    significant; users p = 7.2e-14)``; with one seed, no interval (``one seed``)."""
    if comparison.interval is None:
        over_seeds = "one seed, no interval over seeds"
    else:
        over_seeds = (f"{per_seed_text(comparison)}; {interval_text(comparison.interval)}, "
                      + ("significant" if comparison.significant else "not significant"))
    return f"{comparison.relative:+.1f}% ({over_seeds}; users p = {comparison.p:.2g})"


def multiple_comparisons_text(count):
    """The note on how many comparisons a table makes, and that they are not corrected."""
    return (f"This table makes {count} comparison{'s' if count != 1 else ''}. The intervals are not "
            "corrected for multiple comparisons: each is a 95% interval on its own, so among "
            "many, some could exclude 0 by chance alone.")


def best_other_distiller(summary, size, metric, method="DE-RRD"):
    """The distiller other than ``method`` with the best mean ``metric`` among the table's rows
    of ``size`` (``summary``: :meth:`~recbole_derrd.benchmark.report.Report.summary`), or None."""
    others = [other for other in DISTILLERS if other != method and metric in summary.get((other, size), {})]
    return max(others, key=lambda other: summary[(other, size)][metric][0]) if others else None
