"""
recbole_derrd.benchmark.anneal_study
####################################
DE's temperature schedule measured on tuned tables: the DE and DE-RRD rows of a table as
committed (annealed over ``de_anneal_epochs``'s former default, the run's ``epochs``: 2000 under
``converged.yaml``, a cap that runs stop far before) against the same rows run again with another
``de_anneal_epochs`` (a copy of the table's cells under ``--results=results/anneal``, the rows
run with ``--tune --search_only --method_settings="DE-RRD:de_anneal_epochs=P;DE:de_anneal_epochs=P"``:
the same teacher, student alone and RRD cells, DE-RRD's ``lambda_de`` searched again).

For each table and row: test metrics (mean ± std over seeds), the new schedule against the former
(each seed's difference, a hierarchical bootstrap interval over seeds and users:
:mod:`.seed_stats`), epochs trained, the selection temperature where the run stopped
(:func:`~recbole_derrd.model.experts.annealed_temperature`), and the training time, also over
the student alone's of the same seed (the cost ratio of the speed benchmark).

    python run_scripts/anneal_study.py      # -> results/anneal/study.md
"""

import argparse
import os

import numpy as np

from recbole_derrd.benchmark.arguments import REPO, parse_args, table_settings
from recbole_derrd.benchmark.methods import plugin_defaults
from recbole_derrd.benchmark.seed_stats import compare_over_seeds
from recbole_derrd.benchmark.significance import interval_text, per_seed_text
from recbole_derrd.benchmark.table import Table
from recbole_derrd.model.experts import DEFAULT_ANNEAL_EPOCHS, annealed_temperature

#: (dataset, protocol, --data_path) of each studied table (BPR students, tuned, converged.yaml).
STUDIED = [("ml-100k", "recbole", None), ("lastfm", "fixed", ".bench/dataset")]
METRICS = ["ndcg@10", "recall@20"]
ROWS = ["DE", "DE-RRD"]
RECBOLE_EPOCHS = 300  # RecBole's default ``epochs``


def load(dataset, protocol, data_path, results, anneal_epochs=None):
    """A studied table, read only: as committed (``anneal_epochs`` None) or its rerun."""
    argv = [f"--dataset={dataset}", "--backbone=BPR", f"--protocol={protocol}", "--seeds=3", "--tune",
            f"--results={results}", f"--work={results}",
            "--config_files=" + os.path.join("properties", "experiments", "converged.yaml")]
    argv += [f"--data_path={data_path}"] if data_path else []
    if anneal_epochs is not None:
        argv += ["--search_only",
                 f"--method_settings=DE-RRD:de_anneal_epochs={anneal_epochs};DE:de_anneal_epochs={anneal_epochs}"]
    return Table(parse_args(argv), read_only=True)


def epochs_cap(table):
    """The table's ``epochs``: its --epochs, else what its protocol and configuration files set,
    else RecBole's default."""
    args = table.args
    return args.epochs or table_settings(args.protocol, args.config_files).get("epochs", RECBOLE_EPOCHS)


def by_seed(cells):
    return {cell["seed"]: cell for cell in cells}


def stop_temperature(cell, cap):
    """The selection temperature of the run's last epoch (0-based ``epochs - 1``)."""
    anneal = cell["config"].get("de_anneal_epochs") or cap
    defaults = plugin_defaults("DE-RRD")  # every studied cell ran at the default temperatures
    return annealed_temperature(cell["epochs"] - 1, defaults["de_tau_start"], defaults["de_tau_end"], anneal)


def mean_std(values):
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.4f}"


def row_lines(dataset, method, former, rerun, student, cap):
    """The table lines of one (dataset, row): each metric, then the cost line."""
    seeds = sorted(set(former) & set(rerun) & set(student))
    if not seeds:
        return []
    anneal = rerun[seeds[0]]["config"].get("de_anneal_epochs")
    lines = []
    for metric in METRICS:
        comparison = compare_over_seeds({seed: rerun[seed]["test_per_user"][metric] for seed in seeds},
                                        {seed: former[seed]["test_per_user"][metric] for seed in seeds})
        verdict = ("one seed" if len(seeds) < 2 else
                   f"{per_seed_text(comparison)}; {interval_text(comparison.interval)}, "
                   + ("significant" if comparison.significant else "not significant"))
        lines.append(f"| {dataset} | {method} | {len(seeds)} | {metric} | "
                     f"{mean_std([former[seed]['test'][metric] for seed in seeds])} | "
                     f"{mean_std([rerun[seed]['test'][metric] for seed in seeds])} | "
                     f"{comparison.relative:+.1f}% ({verdict}) |")
    cost = []
    for cells, schedule in ((former, cap), (rerun, anneal)):
        epochs = [cells[seed]["epochs"] for seed in seeds]
        taus = [stop_temperature(cells[seed], cap) for seed in seeds]
        seconds = [cells[seed]["train_seconds"] for seed in seeds]
        ratios = [cells[seed]["train_seconds"] / student[seed]["train_seconds"] for seed in seeds]
        cost.append(f"P = {schedule}: {np.mean(epochs):.0f} epochs, tau at the stop "
                    f"{min(taus):.0e} to {max(taus):.0e}, {np.mean(seconds):.0f} s "
                    f"({np.mean(ratios):.1f}x the student alone's)")
    speedup = np.mean([rerun[seed]["train_seconds"] / former[seed]["train_seconds"] for seed in seeds])
    machines = " / ".join(sorted({cells[seed].get("timing", "?") for cells in (former, rerun, student) for seed in seeds}))
    lines.append(f"| {dataset} | {method} | {len(seeds)} | cost | {cost[0]} | {cost[1]} | "
                 f"time {speedup:.2f}x the former's (timed on: {machines}) |")
    return lines


def study(results_root, anneal_epochs):
    """The study's markdown lines."""
    lines = []
    for dataset, protocol, data_path in STUDIED:
        former_table = load(dataset, protocol, data_path, results_root)
        rerun_table = load(dataset, protocol, data_path, os.path.join(results_root, "anneal"), anneal_epochs)
        cap = epochs_cap(former_table)
        student = by_seed(former_table.plan.reported_cells("student", 20))
        for method in ROWS:
            lines += row_lines(dataset, method, by_seed(former_table.plan.reported_cells(method, 20)),
                               by_seed(rerun_table.plan.reported_cells(method, 20)), student, cap)
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description="DE's annealing schedule: the studied tables' DE and "
                                                 "DE-RRD rows, former schedule against a rerun")
    parser.add_argument("--anneal_epochs", type=int, default=DEFAULT_ANNEAL_EPOCHS, help="P of the rerun")
    parser.add_argument("--results", default=os.path.join(REPO, "results"))
    args = parser.parse_args(argv)
    text = "\n".join(introduction(args.anneal_epochs) + [
        "| data | row | seeds | metric | former: P = the epochs cap | "
        f"P = {args.anneal_epochs} | P = {args.anneal_epochs} vs former |",
        "|---|---|---|---|---|---|---|"] + study(args.results, args.anneal_epochs)) + "\n"
    path = os.path.join(args.results, "anneal", "study.md")
    with open(path, "w") as handle:
        handle.write(text)
    print(text)


def introduction(anneal_epochs):
    return [
        "# DE's annealing schedule: over the epoch cap or over a fixed length", "",
        "Built by `python run_scripts/anneal_study.py` from the committed tables "
        "`results/ml-100k/BPR-recbole` and `results/lastfm/BPR-fixed` (DE and DE-RRD annealed over "
        "`de_anneal_epochs` = `epochs` = 2000, `converged.yaml`'s cap) and their reruns in "
        "`results/anneal/` (the same tables' cells with DE and DE-RRD run again: "
        f"`python run_scripts/benchmark.py <the table's options> --results=results/anneal --search_only "
        f"--methods=teacher,student,RRD,DE-RRD,DE --method_settings=\"DE-RRD:de_anneal_epochs={anneal_epochs};"
        f"DE:de_anneal_epochs={anneal_epochs}\"`, each table's command in its report). The rerun keeps every "
        "other cell (teacher, student alone, RRD and its chosen `lambda_rrd`) and searches DE-RRD's "
        "`lambda_de` again on seed 2020's validation (DE takes it, as in the tables). The reruns "
        "also count the patience only once DE's routing has settled (the plugin's rule since the "
        "tables were made), so a difference is the schedule's and that rule's together.", "",
        "A comparison reads: the relative difference of the means over the seeds (each seed's mean "
        "over its test users); in brackets each seed's difference (%), the 95% interval of a "
        "hierarchical bootstrap (seeds, then each seed's users, paired; 10,000 resamples), and "
        "whether it excludes 0. Cost: epochs trained (mean), the temperature of the last epoch "
        "(over the seeds), training time to the early stop (evaluation excluded) and its ratio to "
        "the student alone's of the same seed, then the rerun's time over the former's (mean of the "
        "seeds' ratios), and the machines the cells were timed on (their records': the former "
        "cells and the student alone in earlier sessions than the reruns, on a machine of the same "
        "kind, each one process per core beside another benchmark).", ""]
