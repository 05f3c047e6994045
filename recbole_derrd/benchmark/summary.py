"""
recbole_derrd.benchmark.summary
###############################
One page across the benchmark tables (``run_scripts/summarize.py``): the headline results per
dataset (one table per student backbone), and the evidence the distillers' default weights are
chosen on (the validation gain of every searched weight over the student alone, on every
dataset of a backbone, and the weight with the best worst case):

    python run_scripts/summarize.py            # the tables listed in TABLES -> results/summary.md
    python run_scripts/summarize.py --tables=ml-100k:BPR:recbole,lastfm:BPR:fixed

Each table is a finished ``run_scripts/benchmark.py --tune --seeds=3`` run (its
``results/<dataset>/<backbone>-<protocol>.cells.json``); nothing is trained here.
"""

import argparse
import os

from recbole_derrd.benchmark import REPO
from recbole_derrd.benchmark.arguments import parse_args
from recbole_derrd.benchmark.cells import read_cells
from recbole_derrd.benchmark.methods import (
    LEARNER_KEYS, STUDENT_DEFAULTS, cell_key, cells_method_settings, is_automatic, setting_label,
)
from recbole_derrd.benchmark.significance import (
    RESAMPLES, best_other_distiller, multiple_comparisons_text, versus_text as comparison_text,
)
from recbole_derrd.benchmark.table import Table

#: (dataset, backbone, protocol) of the headline tables.
TABLES = [("ml-100k", "BPR", "recbole"), ("ml-100k", "BPR", "paper"), ("lastfm", "BPR", "fixed"),
          ("gowalla", "BPR", "fixed"), ("ml-100k", "LightGCN", "recbole"), ("lastfm", "LightGCN", "fixed"),
          ("ml-100k", "NeuMF", "recbole"),
          # BPR students of a LightGCN teacher (reported apart: the cross-architecture section)
          ("ml-100k", "BPR", "recbole", "LightGCN")]
#: Published results on the same test split, so a reader sees how strong our teachers are.
PUBLISHED = {
    "gowalla": "LightGCN paper (He et al., SIGIR 2020), Table 3, on this test split, trained on "
               "train + valid: LightGCN (64-d) Recall@20 0.1830 / NDCG@20 0.1554, NGCF 0.1570 / "
               "0.1327; MF-BPR in the NGCF paper (Wang et al., SIGIR 2019, Table 2, the same "
               "data) 0.1291 / 0.1109.",
}
#: The weight each method's search varies, for the defaults evidence.
SEARCHED_WEIGHT = {"RD": "lambda_rd", "CD": "lambda_cd", "RRD": "lambda_rrd", "DE-RRD": "lambda_de"}
#: Worst-case gains this close (percentage points, the reports' precision) are not told apart.
TIE_POINTS = 0.1


def load_table(dataset, backbone, protocol, results, seeds, sizes="20", teacher_size=200, teacher_backbone=None):
    """A finished table, read only (None where it has no cells): as run with --tune where its
    student alone has searched settings, else at the plugin's defaults, with its cells' own
    --method_settings (``teacher_backbone``: a teacher of another model, --teacher_backbone)."""
    arguments = [f"--dataset={dataset}", f"--backbone={backbone}", f"--protocol={protocol}",
                 f"--seeds={seeds}", "--tune", f"--results={results}", f"--work={results}",
                 f"--sizes={sizes}", f"--teacher_size={teacher_size}"]
    arguments += [f"--teacher_backbone={teacher_backbone}"] if teacher_backbone else []
    table = Table(parse_args(arguments), read_only=True)
    if table.cells and not any(cell["setting"] for cell in table.cells.values() if cell["method"] == "student"):
        # run without --tune: every method at the plugin's defaults
        table = Table(parse_args([argument for argument in arguments if argument != "--tune"]),
                      read_only=True)
    # the table's --method_settings, read back from its cells
    table.args.method_settings = cells_method_settings(table.cells)
    return table if table.cells else None


def table_name(table):
    """``dataset (protocol)``, ``defaults`` for a table run without --tune, and the backbone
    in front where it is not BPR (the headline's): ``LightGCN ml-100k (recbole)``."""
    backbone = "" if table.args.backbone == "BPR" else f"{table.args.backbone} "
    return f"{backbone}{table.args.dataset} ({table.args.protocol}{'' if table.args.tune else ', defaults'})"


def is_cross(table):
    """Whether the table's teacher is another model than its students (--teacher_backbone)."""
    return table.args.teacher_backbone != table.args.backbone


def by_backbone(tables):
    """[(backbone, [(name, table), ...]), ...] in the order the backbones first appear."""
    groups = {}
    for name, table in tables:
        groups.setdefault(table.args.backbone, []).append((name, table))
    return list(groups.items())


def cell_text(entry, metric):
    if entry is None or metric not in entry:
        return "-"
    mean, spread = entry[metric]
    return f"{mean:.4f}" + (f" ± {spread:.4f}" if spread is not None else "")


def versus_text(table, method, baseline, metric, counted=None):
    """``method`` against ``baseline`` on ``metric`` (:meth:`.significance.Comparisons.compare`,
    over the seeds both have): the relative difference, per seed, the interval over seeds and
    users and whether it excludes 0, the users-only Wilcoxon p; ``-`` when either is missing.
    ``counted``: a list that gets the comparison where one is made."""
    size = table.args.sizes[0]
    comparison = table.report.comparisons.compare(method, baseline, size, metric)
    if comparison is None:
        return "-"
    if counted is not None:
        counted.append(comparison)
    return comparison_text(comparison)


#: What a summary cell of a comparison says, for the sections' introductions.
COMPARISON_KEY = (
    "A comparison reads: the relative difference of the two rows' means over the seeds both "
    "have (each seed's mean over its test users); in brackets, each seed's difference (%, in "
    "seed order), the 95% interval of the relative difference from a hierarchical bootstrap "
    f"(the seeds resampled with replacement, then each drawn seed's test users, paired; "
    f"{RESAMPLES:,} resamples), `significant` where that interval excludes 0, and, secondary, "
    "the p of a Wilcoxon signed-rank test over the test users alone (every seed's users "
    "pooled), which says whether the users agree, not whether another seed would. With one "
    "seed no interval over seeds exists (`one seed`).")


def reported_metrics(student):
    """The metrics a summary row reports, as the student alone's cells have them: NDCG@10 and
    Recall@20, and Hit@10 only where Recall is not measured (the paper protocol)."""
    if student is None:
        return []
    return [metric for metric in ("ndcg@10", "recall@20", "hit@10")
            if metric in student and not (metric == "hit@10" and "recall@20" in student)]


def headline(tables, backbone="BPR"):
    """Per table: teacher, student alone, the best other distiller, RRD, DE-RRD (tuned, mean ±
    std over seeds), DE-RRD against the student alone and against that distiller."""
    rows, counted = [], []
    for name, table in tables:
        summary, size = table.report.summary(), table.args.sizes[0]
        teacher = summary.get(("teacher", table.args.teacher_size))
        student = summary.get(("student", size))
        derrd = summary.get(("DE-RRD", size))
        for metric in reported_metrics(student):
            best = best_other_distiller(summary, size, metric)
            versus = versus_best = ratio = "-"
            if derrd is not None:
                versus = versus_text(table, "DE-RRD", "student", metric, counted)
                if best:
                    versus_best = versus_text(table, "DE-RRD", best, metric, counted)
                same_seeds = table.report.ratio_to_teacher(derrd, metric)  # the teacher of DE-RRD's seeds
                ratio = f"{same_seeds:.3f}" if same_seeds is not None else "-"
            seeds = "/".join(str(summary[(method, size)]["seeds"]) for method in ("student", "DE-RRD")
                             if (method, size) in summary)
            rows.append(
                f"| {name} | {seeds} | {metric} | {cell_text(teacher, metric)} | {cell_text(student, metric)} | "
                + (f"{best}: {cell_text(summary[(best, size)], metric)}" if best else "-")
                + f" | {cell_text(summary.get(('RRD', size)), metric)} | {cell_text(derrd, metric)} | "
                f"{versus} | {versus_best} | {ratio} |")
    return [f"## Results across datasets ({backbone} backbone, tuned settings, mean ± std over seeds)", "",
            "seeds: of the student alone / of DE-RRD (a spread needs two or more). A table marked "
            "`defaults` was not tuned: every method at the plugin's defaults. best other "
            "distiller: the distiller other than DE-RRD with the best mean on that metric, among "
            "all the table ran (RD, CD, DE, RRD, RRD-topK, UnKD, HTD). " + COMPARISON_KEY + " "
            + multiple_comparisons_text(len(counted)), "",
            "| data (protocol) | seeds | metric | teacher | student alone | best other distiller | RRD | DE-RRD | "
            "DE-RRD vs student alone | DE-RRD vs best other | DE-RRD / teacher |",
            "|---|---|---|---|---|---|---|---|---|---|---|"] + rows + [""]


def relative_gap(upper, lower, metric):
    """``+9.8%``: ``upper``'s mean over ``lower``'s (summary entries), ``-`` where one is missing."""
    if upper is None or lower is None or metric not in upper or metric not in lower:
        return "-"
    return f"{100 * (upper[metric][0] - lower[metric][0]) / lower[metric][0]:+.1f}%"


def cross_architecture(crossed, tables):
    """Students of a teacher of another model (--teacher_backbone) beside the same students of
    their own model's teacher (the table of the same dataset, backbone and protocol): the
    teacher-student gap, and what DE-RRD and the best other distiller gain over the student alone."""
    if not crossed:
        return []
    rows, counted = [], []
    own = {(table.args.dataset, table.args.backbone, table.args.protocol): table for _, table in tables}
    for name, table in crossed:
        args = table.args
        for teacher_name, source in ((args.teacher_backbone, table),
                                     (args.backbone, own.get((args.dataset, args.backbone, args.protocol)))):
            if source is None:
                continue
            summary, size = source.report.summary(), source.args.sizes[0]
            teacher, student = summary.get(("teacher", source.args.teacher_size)), summary.get(("student", size))
            for metric in [metric for metric in reported_metrics(student) if metric != "hit@10"]:
                best = best_other_distiller(summary, size, metric)
                seeds = "/".join(str(summary[key]["seeds"]) if key in summary else "-" for key in (
                    ("teacher", source.args.teacher_size), ("student", size), ("DE-RRD", size)))
                rows.append(
                    f"| {name} | {teacher_name} {source.args.teacher_size}-d | {seeds} | {metric} | "
                    f"{cell_text(teacher, metric)} | {cell_text(student, metric)} | "
                    f"{relative_gap(teacher, student, metric)} | {cell_text(summary.get(('DE-RRD', size)), metric)} | "
                    f"{versus_text(source, 'DE-RRD', 'student', metric, counted)} | "
                    + (f"{best}: {cell_text(summary[(best, size)], metric)} | "
                       f"{versus_text(source, best, 'student', metric, counted)} |" if best else "- | - |"))
    first = crossed[0][1].args
    return [f"## A teacher of another model: {first.teacher_backbone} teacher, {first.backbone} students", "",
            f"The same {first.backbone} students ({first.sizes_text}-d, the same splits and student alone) "
            f"distilled from a {first.teacher_size}-d {first.teacher_backbone} teacher and, below each, from "
            f"their own model's teacher (the {first.backbone} table above). "
            "gap: the teacher's mean over the student alone's. seeds: of the teacher / the student "
            "alone / DE-RRD. best other distiller: among the distillers the table ran besides "
            "DE-RRD. Tuned as the other tables (the student alone's search is the BPR table's, the "
            "same cells); the LightGCN teacher is not tuned (its table's teacher, at RecBole's "
            "defaults), and HTD was not run. Each table's DE and DE-RRD cells ran under the plugin's DE "
            "schedule and early-stopping rule of their day: the reports say which predate the current "
            "ones. " + COMPARISON_KEY + " " + multiple_comparisons_text(len(counted)), "",
            "| data (protocol) | teacher | seeds | metric | teacher | student alone | gap | DE-RRD | "
            "DE-RRD vs student alone | best other distiller | it vs student alone |",
            "|---|---|---|---|---|---|---|---|---|---|---|"] + rows + [""]


def later_distillers(tables):
    """HTD and UnKD (tuned like the others, mean ± std over seeds) against the student alone and
    against DE-RRD, on the tables that ran them."""
    rows, counted = [], []
    for name, table in tables:
        summary, size = table.report.summary(), table.args.sizes[0]
        if ("HTD", size) not in summary and ("UnKD", size) not in summary:
            continue
        student = summary.get(("student", size))
        seeds = "/".join(str(summary[(method, size)]["seeds"]) if (method, size) in summary else "-"
                         for method in ("student", "HTD", "UnKD"))
        for metric in reported_metrics(student):
            rows.append(
                f"| {name} | {seeds} | {metric} | {cell_text(student, metric)} | "
                f"{cell_text(summary.get(('DE-RRD', size)), metric)} | {cell_text(summary.get(('HTD', size)), metric)} | "
                f"{versus_text(table, 'HTD', 'student', metric, counted)} | "
                f"{versus_text(table, 'HTD', 'DE-RRD', metric, counted)} | "
                f"{cell_text(summary.get(('UnKD', size)), metric)} | "
                f"{versus_text(table, 'UnKD', 'student', metric, counted)} |")
    return ["## The later distillers: HTD and UnKD", "",
            "Tuned like the others (same budget, same seeds); comparisons as above. Tables without "
            "a column did not run that method (CPU time). seeds: of the student alone / HTD / UnKD "
            "(`-`: not run); a method at fewer seeds than the student alone (a search whose later "
            "seeds have not run yet) is compared over the seeds both have. "
            + multiple_comparisons_text(len(counted)), "",
            "| data (protocol) | seeds | metric | student alone | DE-RRD | HTD | HTD vs student alone | "
            "HTD vs DE-RRD | UnKD | UnKD vs student alone |", "|---|---|---|---|---|---|---|---|---|---|"] + rows + [""]


def run_label(setting):
    """How a row beside the search was run: the defaults (their weights), or ``auto`` (with
    trials as long as the run, or 30-epoch ones, the former default)."""
    if not is_automatic(setting):
        return f"defaults ({setting_label(setting)})"
    return "auto (30-epoch trials)" if "weight_search_epochs" in setting else "auto"


def promise_table(tables):
    """The plugin's promise, checked where a user stands without tuning: RRD and DE-RRD at the
    plugin's defaults against the student alone at RecBole's defaults, and with ``auto`` weights
    against the student alone at the same (chosen) learner settings; validation and test."""
    lines = ["## Without tuning: defaults and `auto` against the same student alone (seed 2020)", "",
             "One seed: the seeds' variance is not measured, so these differences carry no interval "
             "and no claim of significance.", "",
             "| data (protocol) | run | its student alone | valid score (vs alone) | test ndcg@10 (vs alone) | "
             "chosen by `auto` |", "|---|---|---|---|---|---|"]
    for name, table in tables:
        size, first = table.args.sizes[0], table.args.seed_values[0]
        if not table.args.tune:  # every method at the defaults: the student alone is the row to beat
            default_student = table.cells.get(cell_key("student", size, first))
            # the defaults, and `auto` with the table's learner settings where --auto_rows ran it
            rows = table.plan.default_rows(size)
            chosen_student = default_student
        else:
            default_student = table.cells.get(cell_key("student", size, first, STUDENT_DEFAULTS))
            try:
                chosen = table.plan.chosen_setting("student", size)
            except RuntimeError:
                continue
            chosen_student = table.cells.get(cell_key("student", size, first, chosen))
            rows = table.plan.default_rows(size, short_trials=True)
        for method, setting in rows:
            cell = table.cells.get(cell_key(method, size, first, setting))
            student = chosen_student if is_automatic(setting) else default_student
            if cell is None or student is None:
                continue
            learner = (setting_label({key: student["setting"][key] for key in LEARNER_KEYS})
                       if student["setting"] else "the table's")
            valid = 100 * (cell["valid_score"] / student["valid_score"] - 1)
            test = 100 * (cell["test"]["ndcg@10"] / student["test"]["ndcg@10"] - 1)
            search = cell.get("weight_search")
            lines.append(
                f"| {name} | {method} {run_label(setting)} | {learner} | "
                f"{cell['valid_score']:.4f} ({valid:+.1f}%) | {cell['test']['ndcg@10']:.4f} ({test:+.1f}%) | "
                + (f"{setting_label(search['chosen'])}, {search['trial_count']} trials, "
                   f"{search['seconds'] + search['preparation_seconds']:.0f} s" if search else "-") + " |")
    return lines + [""]


def weight_trials(table, method, key):
    """{value of ``key``: the validation gain (%) of ``method``'s seed-2020 cell at it over the
    student alone trained with the same learner settings}. A --tune table: its grid's trials; a
    table without: its cells at the default and --other_weights (the method's other weights at
    their current defaults)."""
    size, first = table.args.sizes[0], table.args.seed_values[0]
    if method not in table.args.methods:
        return {}
    if table.args.tune:
        try:
            student = table.plan.chosen_setting("student", size)
        except RuntimeError:
            return {}
        reference = table.cells.get(cell_key("student", size, first, student))
        cells = table.plan.trials(method, size)
    else:
        reference = table.cells.get(cell_key("student", size, first))
        others = table.plan.default_setting(method)
        others.pop(key)
        cells = [cell for cell in table.cells.values()
                 if cell["method"] == method and cell["seed"] == first and cell["size"] == size
                 and set(cell["setting"]) == set(others) | {key}  # no other key varied
                 and all(cell["setting"].get(name) == value for name, value in others.items())
                 and not is_automatic(cell["setting"])]
    if reference is None:
        return {}
    return {cell["setting"][key]: 100 * (cell["valid_score"] / reference["valid_score"] - 1) for cell in cells}


def defaults_evidence(tables, backbone="BPR"):
    """For every weight value run: its validation gain over the student alone (the same
    learner settings the distillers train with) on each dataset of one backbone, and the worst."""
    columns = [(name, table) for name, table in tables
               if any(weight_trials(table, method, key) for method, key in SEARCHED_WEIGHT.items())]
    if not columns:
        return []
    names = [name for name, _ in columns]
    lines = [f"## Default weights: validation gain over the student alone, every dataset ({backbone} students)", "",
             "Each value's best validation score (seed 2020) relative to the student alone "
             "trained with the same learning rate and weight decay; the default should maximise the "
             "worst case (last column), not the gain on one dataset. Searched tables: their grid; "
             "`defaults` tables (no search): the values run there (the default and "
             "`--other_weights`), each at RecBole's learner defaults. DE-RRD's rows vary `lambda_de` "
             "at each searched dataset's chosen `lambda_rrd`. `worst` over the datasets where the "
             "value was run (how many, when not all). One seed: no interval, no claim of "
             "significance.", "",
             "| method | weight | " + " | ".join(names) + " | worst |",
             "|---|---|" + "---|" * len(names) + "---|"]
    best_rows = {}  # method: [(value, (datasets, worst)), ...]
    for method, key in SEARCHED_WEIGHT.items():
        gains = {}
        for name, table in columns:
            for value, gain in weight_trials(table, method, key).items():
                gains.setdefault(value, {})[name] = gain
        for value in sorted(gains):
            row = gains[value]
            worst = min(row.values())
            cells = " | ".join(f"{row[name]:+.1f}%" if name in row else "-" for name in names)
            count = "" if len(row) == len(names) else f" ({len(row)} of {len(names)})"
            lines.append(f"| {method} | {key} = {value:g} | {cells} | {worst:+.1f}%{count} |")
            best_rows.setdefault(method, []).append((value, (len(row), worst)))
    lines += ["", "Best worst case (among the values run on the most datasets; values within "
              f"{TIE_POINTS} points of it listed as ties): " + "; ".join(
                  best_worst_case(method, values, len(names)) for method, values in best_rows.items())
              + "." if best_rows else "", ""]
    return lines


def best_worst_case(method, values, datasets):
    """``RRD lambda_rrd = 0.003 or 0.01 (-3.0%)``: the values with the best worst-case gain
    among those run on the most datasets, ties (within TIE_POINTS) included."""
    most = max(count for _, (count, _) in values)
    candidates = [(value, worst) for value, (count, worst) in values if count == most]
    best = max(worst for _, worst in candidates)
    tied = [value for value, worst in candidates if worst >= best - TIE_POINTS]
    return (f"{method} {SEARCHED_WEIGHT[method]} = {' or '.join(f'{value:g}' for value in tied)} ({best:+.1f}%"
            + (f", {most} of {datasets} datasets)" if most < datasets else ")"))


def candidates_table(results):
    """Fixed against redrawn evaluation candidates under the paper's protocol (benchmarks run
    with ``--results=<results>/eval-candidates/{fixed,redrawn}``): the early stop and the test
    metrics of the student alone and RRD (at the plugin's defaults when it ran: its weight shown)."""
    folder = os.path.join(results, "eval-candidates")
    if not os.path.isdir(os.path.join(folder, "fixed")):
        return []
    lines = ["## Sampled evaluation: fixed against redrawn candidates (paper's protocol, defaults)", "",
             "Each user's 499 negatives drawn once per split (`fixed_eval_candidates: True`, "
             "`protocol_paper.yaml`) or anew at every evaluation (RecBole's own, "
             "`redrawn_candidates.yaml`); the same split, seed and settings otherwise. RecBole stops "
             "after 21 evaluations without improvement (patience 20): best epoch, from 0, = epochs run - 22.", "",
             "| data | method | candidates | epochs run | best valid ndcg@10 | test ndcg@10 | test hit@10 |",
             "|---|---|---|---|---|---|---|"]
    for dataset in sorted(os.listdir(os.path.join(folder, "fixed"))):
        for method in ("teacher", "student", "RRD"):
            for variant in ("fixed", "redrawn"):
                path = os.path.join(folder, variant, dataset, "BPR-paper.cells.json")
                if not os.path.isfile(path):
                    continue
                cells = read_cells(path)[0]
                cell = next((cell for cell in cells.values() if cell["method"] == method), None)
                if cell is None:
                    continue
                weights = setting_label(cell.get("weights", {}))
                lines.append(f"| {dataset} | {method}{f' ({weights})' if weights else ''} | {variant} | {cell['epochs']} | "
                             f"{cell['valid'].get('ndcg@10', float('nan')):.4f} | {cell['test']['ndcg@10']:.4f} | "
                             f"{cell['test']['hit@10']:.4f} |")
    return lines + [""]


def main(argv=None):
    parser = argparse.ArgumentParser(description="One page across the benchmark tables: the headline "
                                     "results, and the evidence the default weights are chosen on.")
    parser.add_argument("--tables", default=",".join(":".join(table) for table in TABLES),
                        help="dataset:backbone:protocol, comma-separated")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sizes", default="20", help="the student size the tables report")
    parser.add_argument("--teacher_size", type=int, default=200)
    parser.add_argument("--results", default=os.path.join(REPO, "results"))
    parser.add_argument("--output", default=None, help="default: <results>/summary.md")
    args = parser.parse_args(argv)
    tables, missing = [], []
    for spec in args.tables.split(","):
        dataset, backbone, protocol, *teacher = spec.split(":")
        table = load_table(dataset, backbone, protocol, args.results, args.seeds, args.sizes, args.teacher_size,
                           *teacher)
        if table is None:
            missing.append(f"`{dataset}/{backbone}{''.join('-from-' + model for model in teacher)}-{protocol}`")
        else:
            tables.append((table_name(table), table))
    if not tables:
        raise SystemExit(f"no benchmark cells under {args.results} for {', '.join(missing)}")
    lines = ["# Benchmark summary", "",
             "Built by `python run_scripts/summarize.py` from the benchmark tables "
             + ", ".join(f"`results/{table.args.dataset}/{table.name}.md`" for _, table in tables)
             + " (each: `python run_scripts/benchmark.py --tune --seeds=3 ...`, see docs/benchmark.md)."
             + (f" Not run yet: {', '.join(missing)}." if missing else ""), ""]
    published = [f"- **{dataset}**: {text}" for dataset, text in PUBLISHED.items()
                 if any(table.args.dataset == dataset for _, table in tables)]
    crossed = [(name, table) for name, table in tables if is_cross(table)]
    tables = [(name, table) for name, table in tables if not is_cross(table)]
    groups = by_backbone(tables)
    lines += ["<!-- headline:start -->", ""]  # the README's headline (run_scripts/make_docs.py)
    for backbone, members in groups:
        lines += headline(members, backbone)
    lines += ["<!-- headline:end -->", ""]
    lines += (["Published references:", ""] + published + [""] if published else [])
    lines += cross_architecture(crossed, tables) + later_distillers(tables) + promise_table(tables)
    for backbone, members in groups:
        lines += defaults_evidence(members, backbone)
    lines += candidates_table(args.results)
    output = args.output or os.path.join(args.results, "summary.md")
    with open(output, "w") as handle:
        handle.write("\n".join(lines))
    print("\n".join(lines))
