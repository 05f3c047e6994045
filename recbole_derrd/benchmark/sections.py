"""
recbole_derrd.benchmark.sections
################################
The sections of a table's markdown report below its results table, each from the table's
:class:`~recbole_derrd.benchmark.report.Report`: retrained teachers, the search (``--tune``), the
cells at other weights, the comparisons over seeds and test users, recall by item-popularity
group, and a note where DE's cells predate the plugin's current early-stopping rule.
"""

import os
import statistics

from recbole_derrd.benchmark import REPO, RESULTS
from recbole_derrd.benchmark.cells import PER_USER_METRICS
from recbole_derrd.benchmark.methods import (
    DISTILLERS, METHODS, TUNING_GRIDS, TUNING_ORDER, cell_key, is_plugin_default, setting_label,
)
from recbole_derrd.benchmark.significance import (
    RESAMPLES, best_other_distiller, interval_text, multiple_comparisons_text, per_seed_text, verdict_text,
)
from recbole_derrd.model.experts import DEFAULT_ANNEAL_EPOCHS


def gain_text(cell, reference):
    """``cell``'s validation score relative to ``reference``'s (``-`` without a reference)."""
    return f"{100 * (cell['valid_score'] / reference['valid_score'] - 1):+.1f}%" if reference else "-"


def tuning_text(report):
    """The search behind the chosen settings: every trial of the first seed, its validation
    score and test metric, and its validation gain over the student alone at RecBole's
    defaults (the row the distilled student must beat); then the rows beside the search."""
    args, plan, size = report.args, report.plan, report.args.sizes[0]
    try:  # the student alone with the learner settings every distiller trains with
        reference = report.cells.get(cell_key("student", size, args.seed_values[0],
                                              plan.chosen_setting("student", size)))
    except RuntimeError:
        reference = None
    lines = [f"## Search (seed {args.seed_values[0]}, validation split, {len(next(iter(TUNING_GRIDS.values())))} "
             "trials per method)", "",
             "Chosen: the best validation score (the protocol's `valid_metric`). Every distiller "
             "trains its student with the student alone's chosen learning rate and weight decay. "
             "DE-RRD searches "
             "`lambda_de` with RRD's chosen `lambda_rrd`; DE alone takes DE-RRD's `lambda_de` and "
             "RRD-topK RRD's `lambda_rrd` (no trials of their own). `defaults`: the plugin's "
             "current default for that key. Validation gains are relative to the chosen student "
             "alone (the learner settings the distillers train with).", "",
             f"| method | setting | valid score | valid vs student alone | test {args.metric} | epochs | "
             "train s | |", "|---|---|---|---|---|---|---|---|"]
    for method in TUNING_ORDER:
        if method not in TUNING_GRIDS or method not in args.methods:
            continue
        try:
            chosen = plan.chosen_setting(method, size)
        except RuntimeError:  # its search has not finished: its trials so far, none chosen
            chosen = None
        for cell in plan.trials(method, size):
            marks = [word for word, flag in (("chosen", cell["setting"] == chosen),
                                             ("defaults", is_plugin_default(method, cell["setting"], args.backbone)))
                     if flag]
            lines.append(f"| {method} | {setting_label(cell['setting'])} | {cell['valid_score']:.4f} | "
                         f"{gain_text(cell, reference)} | {cell['test'][args.metric]:.4f} | {cell['epochs']} | "
                         f"{cell['train_seconds']:.0f} | {', '.join(marks)} |")
    return lines + beside_search_text(report, reference)


def beside_search_text(report, reference):
    """The rows beside the search (the defaults, ``auto``) at the first seed, against the
    chosen student alone ``reference``."""
    args, size = report.args, report.args.sizes[0]
    lines = ["", f"Without a search (seed {args.seed_values[0]}): the plugin's defaults with RecBole's "
             "learner defaults, and `auto` (the weights the plugin's own search chose, with the "
             "student alone's chosen learner settings; its trials and their time; train s: the final "
             "run (the chosen trial itself where the trials are as long as the run, as the run "
             "adopts it); trials as long as the run unless the row says 30-epoch trials, the former "
             "default). Validation gains relative to the chosen student alone.", "",
             f"| method | valid score | valid vs student alone | test {args.metric} | epochs | train s |",
             "|---|---|---|---|---|---|"]
    for method, setting in report.plan.default_rows(size, short_trials=True):
        cell = report.cells.get(cell_key(method, size, args.seed_values[0], setting))
        if cell:
            search = cell.get("weight_search")
            short = " of 30 epochs" if "weight_search_epochs" in setting else ""
            name = method + (f" (auto: {setting_label(search['chosen'])}; {search['trial_count']} "
                             f"trials{short}, {search['seconds'] + search['preparation_seconds']:.0f} s)"
                             if search else "")
            lines.append(f"| {name} | {cell['valid_score']:.4f} | {gain_text(cell, reference)} | "
                         f"{cell['test'][args.metric]:.4f} | {cell['epochs']} | {cell['train_seconds']:.0f} |")
    return lines + [""]


def other_settings_groups(report):
    """The cells of the table's seeds at other settings than those the report shows elsewhere,
    grouped by (method's index, size, setting label)."""
    args, plan = report.args, report.plan
    reported = {id(cell) for method in METHODS for size in args.sizes + [args.teacher_size]
                for cell in plan.reported_cells(method, size)}
    elsewhere = plan.searched_keys()
    groups = {}
    for key, cell in report.cells.items():
        if (cell["method"] in DISTILLERS and id(cell) not in reported and key not in elsewhere
                and cell["seed"] in args.seed_values):
            label = setting_label(cell["setting"])
            groups.setdefault((METHODS.index(cell["method"]), cell["size"], label), []).append(cell)
    return groups


def other_settings_text(report):
    """Cells of this split at other weights than those the report shows elsewhere (e.g. run
    at a former default), kept and shown apart: the table above has the current defaults
    (or, with --tune, the chosen settings; the search and the rows beside it have theirs)."""
    args = report.args
    groups = other_settings_groups(report)
    if not groups:
        return []
    lines = ["## Other weights on this split", "",
             "Cells at other weights (or settings) than those the table above reports, "
             "e.g. run at a former default; mean over the seeds run, against the table's student "
             "alone of the same seeds" + (" (at its chosen setting)." if args.tune else "."), "",
             f"| method | size | setting | seeds | test {args.metric} | vs student | test recall@20 | epochs | train s | "
             "valid score vs student |", "|---|---|---|---|---|---|---|---|---|---|"]
    # the table's student alone of each size and seed (with --tune: at its chosen setting)
    student_of = {(size, student["seed"]): student for size in {size for _, size, _ in groups}
                  for student in report.plan.reported_cells("student", size)}
    for (index, size, label), cells in sorted(groups.items()):
        students = [student_of.get((size, cell["seed"])) for cell in cells]
        lines.append(other_settings_row(args.metric, METHODS[index], size, label, cells, students))
    return lines + [""]


def other_settings_row(metric, method, size, label, cells, students):
    """One row of :func:`other_settings_text`: ``cells`` (one setting, one per seed) against
    ``students`` (the student alone of each one's seed, None where there is none)."""
    mean = statistics.mean(cell["test"][metric] for cell in cells)
    gain = valid_gain = "-"
    if all(students):
        gain = f"{100 * (mean / statistics.mean(student['test'][metric] for student in students) - 1):+.1f}%"
        if all(cell.get("valid_score") is not None for cell in cells + students):
            valid = statistics.mean(cell["valid_score"] for cell in cells)
            valid_gain = f"{100 * (valid / statistics.mean(student['valid_score'] for student in students) - 1):+.1f}%"
    seconds = [cell["train_seconds"] for cell in cells if cell.get("train_seconds") is not None]
    recalls = [cell["test"]["recall@20"] for cell in cells if "recall@20" in cell["test"]]
    recall = f"{statistics.mean(recalls):.4f}" if len(recalls) == len(cells) else "-"
    searches = [cell["weight_search"] for cell in cells if cell.get("weight_search")]
    if searches:  # `auto`: what the plugin's search chose, its trials and their time
        label += "".join(f" (chose {setting_label(search['chosen'])}; {search['trial_count']} trials, "
                         f"{search['seconds'] + search['preparation_seconds']:.0f} s)"
                         for search in searches)
    return (f"| {method} | {size} | {label or '-'} | {len(cells)} | {mean:.4f} | {gain} | {recall} | "
            f"{statistics.mean(cell['epochs'] for cell in cells):.0f} | "
            + (f"{statistics.mean(seconds):.0f}" if seconds else "-") + f" | {valid_gain} |")


def significance_text(report, summary):
    """The comparisons over seeds and test users (:mod:`.significance`): every distiller
    against the student alone, DE-RRD against the best other distiller (by mean test metric,
    on each metric); how many comparisons the table makes."""
    args, size = report.args, report.args.sizes[0]
    metrics = [metric for metric in (args.metric, "recall@20") if metric in PER_USER_METRICS]
    pairs = [(method, "student", metric) for method in METHODS if method in DISTILLERS for metric in metrics]
    if ("DE-RRD", size) in summary:
        pairs += [("DE-RRD", best_other_distiller(summary, size, metric), metric) for metric in metrics]
    rows = []
    for method, baseline, metric in pairs:
        comparison = report.comparisons.compare(method, baseline, size, metric) if baseline else None
        if comparison is not None:
            rows.append(f"| {method} vs {baseline} | {metric} | {len(comparison.seeds)} | "
                        f"{comparison.relative:+.1f}% | {per_seed_text(comparison)} | "
                        f"{interval_text(comparison.interval) if comparison.interval else '-'} | "
                        f"{verdict_text(comparison)} | {interval_text(comparison.user_interval)} | "
                        f"{comparison.p:.2g} |")
    if not rows:
        return []
    return ["## Significance (over seeds and test users)", "",
            "Every distiller against the student alone, then DE-RRD against the best other "
            "distiller on each metric (by its mean). Each comparison over the seeds both rows "
            "have (the two models of a pair ranked the same test users of each seed's split). relative: the difference of the two rows' "
            "means over seeds (each seed's mean over its test users), relative to the second "
            "row's; per seed: each seed's relative difference (%), in seed order. 95% interval: "
            "of the relative difference, by a hierarchical bootstrap (the seeds resampled with "
            f"replacement, then each drawn seed's test users, paired; {RESAMPLES:,} resamples; "
            "`recbole_derrd/benchmark/seed_stats.py`), so it holds the variance between seeds as "
            "well as between users. significant: `yes` where that interval excludes 0 (the `*` "
            "of the table above); with one seed no such interval exists (`one seed`). Secondary, "
            "over the users alone: the interval with the users resampled within their seeds, and "
            "the p of a Wilcoxon signed-rank test of the per-user differences, every seed's users "
            "pooled (users with no difference left out); they say whether the users agree, not "
            "whether another seed would. " + multiple_comparisons_text(report.comparisons.count()), "",
            "| comparison | metric | seeds | relative | per seed (%) | 95% interval (seeds, users) | "
            "significant | users only: 95% interval | users only: p |",
            "|---|---|---|---|---|---|---|---|---|"] + rows + [""]


def early_stopping_text(report):
    """A line where the table's DE and DE-RRD cells were trained before the plugin's current
    early-stopping rule (their records have no ``early_stopping_rule``,
    :data:`.training.EARLY_STOPPING_RULE`) or DE's current default schedule (no ``de_schedule``,
    :data:`.training.DE_SCHEDULE`, and no ``de_anneal_epochs`` of their own)."""
    cells = [cell for cell in report.cells.values()
             if cell["method"] in ("DE", "DE-RRD") and cell["seed"] in report.args.seed_values]
    former = [cell for cell in cells if "early_stopping_rule" not in cell]
    annealed = [cell for cell in cells if "de_schedule" not in cell
                and not dict(cell.get("config", {}), **cell.get("setting", {})).get("de_anneal_epochs")]
    def which(part):
        return "All its" if len(part) == len(cells) else f"{len(part)} of its {len(cells)}"

    notes = []
    if former:
        notes.append(
            f"{which(former)} DE and DE-RRD cells were trained under the plugin's former early-stopping rule: "
            "the patience counted from the first epoch, during DE's transient routing too; the "
            "plugin now counts it once DE's routing has settled. For a seed the former rule stopped "
            f"too early, see {document_link(report, 'results/ml-100k/BPR-paper.seed-2022.md')}.")
    if annealed:
        notes.append(
            f"{which(annealed)} DE and DE-RRD cells annealed DE's selection over the run's whole `epochs` (the "
            f"former default of `de_anneal_epochs`); the plugin now anneals over at most {DEFAULT_ANNEAL_EPOCHS} epochs. "
            f"What that changes is measured in {document_link(report, 'results/anneal/study.md')}.")
    return [" ".join(notes), ""] if notes else []


def document_link(report, path):
    """A link to the repository's ``path`` from the report's folder, or the path itself where
    the report is written outside the repository's results."""
    folder = os.path.dirname(os.path.abspath(report.path))
    if os.path.commonpath([folder, RESULTS]) != RESULTS:
        return f"`{path}`"
    return f"[{path}]({os.path.relpath(os.path.join(REPO, path), folder)})"


def popularity_text(report, keys):
    """Test Recall@20 (or the protocol's largest k) within item-popularity groups
    (--popularity_groups), mean over the reported seeds of each row: does a distilled
    student serve the long tail as well as the head?"""
    rows = []
    for method, size in keys:
        cells = [cell.get("popularity") for cell in report.plan.reported_cells(method, size)]
        cells = [cell for cell in cells if cell]
        if cells:
            rows.append((method, size, cells))
    if not rows:
        return []
    first = rows[0][2][0]
    ks = sorted(int(field.split("@")[1]) for field in first if field.startswith("recall@"))
    k = 20 if 20 in ks else ks[-1]
    groups = first["groups"]
    shares = " | ".join(f"group {group} ({100 * share:.0f}%, {items:,} items)" for group, (share, items)
                        in enumerate(zip(first["interaction_share"], first["items"])))
    lines = [f"## Recall@{k} by item-popularity group", "",
             f"Items in {groups} groups of about equal total training interactions, group 0 the "
             "least popular (in brackets: its share of the training interactions, its items; "
             "`popularity_groups`, recbole_derrd/data/popularity.py). Recall@k of each group's test "
             "items in the user's top-k, over the test users with a test item in the group; mean "
             "over the row's seeds.", "",
             f"| method | size | seeds | {shares} |", "|---|---|---|" + "---|" * groups]
    for method, size, cells in rows:
        values = []
        for group in range(groups):
            scores = [cell[f"recall@{k}"][group] for cell in cells
                      if cell[f"recall@{k}"][group] is not None and cell[f"recall@{k}"][group] == cell[f"recall@{k}"][group]]
            values.append(f"{statistics.mean(scores):.4f}" if scores else "-")  # NaN: an empty group
        lines.append(f"| {method} | {size} | {len(cells)} | " + " | ".join(values) + " |")
    return lines + [""]


def retrained_teacher_text(report):
    """Which seeds' teachers were trained again without reproducing the reported one, and
    which cells learnt from the retrained teacher (:func:`.cells.retrained_teacher_cell`)."""
    args, metric, lines = report.args, report.args.metric, []
    for cell in sorted(report.cells.values(), key=lambda cell: cell["seed"]):
        if ("retrained" not in cell or cell["method"] != "teacher" or cell.get("size") != args.teacher_size
                or cell["seed"] not in args.seed_values):
            continue
        students = sorted(f"{other['method']} ({setting_label(other['setting']) or 'defaults'})"
                          for other in report.cells.values()
                          if other["seed"] == cell["seed"] and other.get("retrained_teacher"))
        lines.append(f"Seed {cell['seed']}'s teacher was trained again (its checkpoint was gone) and "
                     f"did not reproduce: test {metric} {cell['retrained']['test'][metric]:.4f} against the "
                     f"reported teacher's {cell['test'][metric]:.4f}. The table reports the teacher its "
                     "earlier cells learnt from; "
                     + (f"these learnt from the retrained one: {', '.join(students)}." if students
                        else "no cell has learnt from the retrained one."))
    return lines + [""] if lines else []
