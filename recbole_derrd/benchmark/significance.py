"""
recbole_derrd.benchmark.significance
####################################
Paired tests between two rows of a table over the test users: the per-user metrics of the
two models' rankings of each user (every seed's test split pooled, each user of each seed
once), a Wilcoxon signed-rank test of their differences and a bootstrap 95% interval of the
mean difference, users resampled within each seed.
"""

import numpy as np

from recbole_derrd.benchmark.cells import PER_USER


def paired_difference(cells, baseline_cells, metric, resamples=10000, seed=0):
    """Mean per-user difference of ``metric`` (cells minus baseline cells), pooled over the
    seeds both have, with a Wilcoxon signed-rank p-value and a bootstrap 95% interval (users
    resampled within each seed). None when no seed has per-user values on both sides."""
    from scipy.stats import wilcoxon

    differences, baseline_values = paired_values(cells, baseline_cells, metric)
    if not differences:
        return None
    pooled = np.concatenate(differences)
    low, high = bootstrap_interval(differences, len(pooled), resamples, seed)
    p_value = float(wilcoxon(pooled).pvalue) if np.any(pooled != 0) else 1.0
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
