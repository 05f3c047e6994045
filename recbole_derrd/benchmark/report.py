"""
recbole_derrd.benchmark.report
##############################
A table's reports, from its cells: ``<backbone>-<protocol>.csv``, ``.md`` and ``.png`` (each row
a method and size: test metrics as mean and standard deviation over the seeds, parameters,
inference time, training time and its ratio to the student alone's, the ratio to the teacher),
the markdown's further sections (:mod:`.sections`) and the plot (:mod:`.plot`).

A row run at fewer seeds than the teacher or the student alone is compared with theirs at the
same seeds only.
"""

import csv
import os
import statistics

from recbole_derrd.benchmark import plot, sections
from recbole_derrd.benchmark.methods import DEFAULT_METHODS, METHODS, PROTOCOLS, setting_label
from recbole_derrd.benchmark.significance import Comparisons

#: The per-cell fields a row averages besides the test metrics.
AVERAGED_FIELDS = ("parameters", "inference_seconds", "train_seconds_per_epoch", "epochs", "train_seconds")


def format_value(value, spec, prefix=""):
    """``value`` formatted, or nothing where it was not measured (a spread over one seed)."""
    return "" if value is None else prefix + format(value, spec)


class Report:
    """The reports of one table (``args``: its command's options; ``plan``: its
    :class:`~recbole_derrd.benchmark.plan.Plan`), written to ``folder/name.*``."""

    def __init__(self, args, store, plan, folder, name):
        self.args = args
        self.store = store
        self.plan = plan
        self.path = os.path.join(folder, name)
        #: Every comparison between its rows, each made once (:class:`.significance.Comparisons`).
        self.comparisons = Comparisons(plan)

    @property
    def cells(self):
        return self.store.cells

    def summary(self):
        """{(method, size): {metric: (mean, std), ...}} over seeds."""
        summary = {}
        for method in METHODS:
            for size in [self.args.teacher_size] if method == "teacher" else self.args.sizes:
                cells = self.plan.reported_cells(method, size)
                if cells:
                    summary[(method, size)] = summary_entry(cells)
        return summary

    def write(self):
        """Write the csv, markdown and png reports; returns whether there was anything to report."""
        summary = self.summary()
        if not summary:
            return False
        metrics = sorted({m for entry in summary.values() for m in entry if "@" in m},
                         key=lambda m: (m.split("@")[0], int(m.split("@")[1])))
        order = {method: index for index, method in enumerate(METHODS)}
        keys = sorted(summary, key=lambda item: (item[0] != "teacher", item[1], order[item[0]]))
        self.write_csv(self.path + ".csv", summary, keys, metrics)
        self.write_markdown(self.path + ".md", summary, keys, metrics)
        plot.plot(self.path + ".png", self.args, summary, summary.get(("teacher", self.args.teacher_size)))
        return True

    def write_csv(self, path, summary, keys, metrics):
        metric = self.args.metric
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["method", "size", "seeds"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
                            + ["parameters", "inference_seconds", "train_seconds_per_epoch", "epochs",
                               f"{metric}_ratio_to_teacher", "train_seconds_ratio_to_student"])
            for method, size in keys:
                entry = summary[(method, size)]
                writer.writerow([method, size, entry["seeds"]]
                                + [format_value(entry[m][i], ".5f") for m in metrics for i in (0, 1)]
                                + [entry["parameters"], entry["inference_seconds"],
                                   entry["train_seconds_per_epoch"], entry["epochs"],
                                   self.ratio_to_teacher(entry, metric), self.training_cost_ratio(method, size)])

    def write_markdown(self, path, summary, keys, metrics):
        shown = [m for m in metrics if m.split("@")[1] in ("5", "10", "20")]
        metric = self.args.metric
        lines = self.introduction() + [
            "| method | size | seeds | " + " | ".join(shown) + " | params | inference | s/epoch | epochs | "
            f"train s | train s vs student | {metric} vs teacher | {metric} vs student | setting |",
            "|---|---|---|" + "---|" * len(shown) + "---|---|---|---|---|---|---|---|---|"]
        lines += [self.row(method, size, summary[(method, size)], shown) for method, size in keys]
        lines.append("")
        lines += sections.early_stopping_text(self)
        lines += sections.retrained_teacher_text(self)
        if self.args.tune:
            lines += sections.tuning_text(self)
        lines += sections.other_settings_text(self)
        lines += sections.significance_text(self, summary)
        lines += sections.popularity_text(self, keys)
        with open(path, "w") as handle:
            handle.write("\n".join(lines))

    def introduction(self):
        """The markdown's title and the paragraph that says how its table was made."""
        args = self.args
        teacher = "" if args.teacher_backbone == args.backbone else f" ({args.teacher_backbone} teacher)"
        return [f"# {args.dataset}, {args.backbone} backbone{teacher}, {args.protocol} protocol", "",
                f"Command: `python run_scripts/benchmark.py --dataset={args.dataset} "
                f"--backbone={args.backbone} --protocol={args.protocol} --sizes={args.sizes_text} "
                f"--seeds={len(args.seed_values)}{self.extra_arguments()}`; protocol "
                f"`{PROTOCOLS[args.protocol]}`. "
                + (f"Test metrics, mean ± standard deviation over seeds {args.seed_values} (each seed "
                   "is its own split, teacher and students). " if len(args.seed_values) > 1 else
                   f"Test metrics of one seed ({args.seed_values[0]}): no spread over seeds was "
                   "measured, so differences of about 0.01 may be training noise. ")
                + f"Times measured on: {self.timing_text()}. "
                + ("Each method at its setting chosen on the validation split of seed "
                   f"{args.seed_values[0]} (`--tune`: see the search below); " if args.tune else
                   "Students use the plugin's default hyperparameters; ")
                + "train s: training time to the early stop (evaluation excluded). Inference: full-sort scoring and top-k (the protocol's largest k) of all users, "
                f"median of {args.inference_repeats} repeats measured side by side; training time "
                "per epoch excludes evaluation; train s vs student: a method's training time over the "
                "student alone's of the same seed, averaged over seeds (the seeds' times may come from "
                "different machines, the two of one seed from the same one). "
                + ("`*`: the difference to the student alone is significant: its 95% interval over "
                   "seeds and test users (a hierarchical bootstrap, below) excludes 0." if len(args.seed_values) > 1
                   else "No `*`: with one seed no interval over seeds exists, so no difference is "
                   "called significant (the tests over users alone are below).")
                , ""]

    def row(self, method, size, entry, shown):
        """One markdown row of the results table."""
        metric = self.args.metric
        # both against the same seeds (a method run at fewer seeds than the teacher or the
        # student is not compared with other seeds' models), as the paired test is
        ratio = self.ratio_to_teacher(entry, metric)
        vs_teacher = f"{ratio:.3f}" if ratio is not None else "-"
        student = self.same_seed_mean("student", size, entry["seed_values"], metric)
        vs_student = (f"{100 * (entry[metric][0] / student - 1):+.1f}%"
                      if student and method not in ("teacher", "student") else "")
        if vs_student:
            comparison = self.comparisons.compare(method, "student", size, metric)
            vs_student += "*" if comparison and comparison.significant else ""
        cost_ratio = self.training_cost_ratio(method, size)
        inference = f"{1000 * entry['inference_seconds']:.1f} ms" if entry["inference_seconds"] else "-"
        per_epoch = f"{entry['train_seconds_per_epoch']:.2f}" if entry["train_seconds_per_epoch"] else "-"
        return (f"| {method} | {size} | {entry['seeds']} | "
                + " | ".join(format_value(entry[m][0], ".4f") + format_value(entry[m][1], ".4f", prefix=" ± ")
                             for m in shown)
                + f" | {entry['parameters']:,.0f} | {inference} | {per_epoch} | {entry['epochs']:.0f} | "
                + (f"{entry['train_seconds']:.0f}" if entry.get("train_seconds") else "-")
                + f" | {f'{cost_ratio:.1f}x' if cost_ratio is not None and method != 'student' else ''}"
                + f" | {vs_teacher} | {vs_student} | {setting_label(entry['setting']) or '-'} |")

    def same_seed_mean(self, method, size, seeds, metric):
        """Mean ``metric`` of ``method``'s reported cells at ``seeds`` only (None if it has none
        there): a row run at fewer seeds than the table is compared with the same seeds."""
        values = [cell["test"][metric] for cell in self.plan.reported_cells(method, size) if cell["seed"] in seeds]
        return statistics.mean(values) if values else None

    def ratio_to_teacher(self, entry, metric):
        """A row's ``metric`` over the teacher's, both averaged over the row's seeds."""
        teacher = self.same_seed_mean("teacher", self.args.teacher_size, entry["seed_values"], metric)
        return entry[metric][0] / teacher if teacher else None

    def training_cost_ratio(self, method, size):
        """Mean over seeds of a method's training time over the student alone's at the same seed
        (None without a pair): cells of different seeds may have been timed on different
        machines (a benchmark resumed elsewhere), the two cells of one seed on the same one. A
        student size is compared with the student alone of its size; the teacher with the
        table's first size."""
        student_size = self.args.sizes[0] if method == "teacher" else size
        student_seconds = {cell["seed"]: cell.get("train_seconds")
                           for cell in self.plan.reported_cells("student", student_size)}
        ratios = [cell["train_seconds"] / student_seconds[cell["seed"]]
                  for cell in self.plan.reported_cells(method, size)
                  if cell.get("train_seconds") and student_seconds.get(cell["seed"])]
        return statistics.mean(ratios) if ratios else None

    def timing_text(self):
        """What the reported cells' times were measured on (older cells did not record it)."""
        contexts = {cell.get("timing", "not recorded") for cell in self.cells.values()
                    if cell["seed"] in self.args.seed_values}
        return "; ".join(sorted(contexts))

    def extra_arguments(self):
        """The command-line options that changed what was run, for the report's command."""
        args = self.args
        extra = [option for option, given in (
            ("--tune", args.tune),
            ("--search_only", args.search_only),
            (f"--data_path={args.data_path}", args.data_path),
            (f"--methods={','.join(args.methods)}", args.methods != DEFAULT_METHODS),
            (f"--teacher_size={args.teacher_size}", args.teacher_size != 200),
            (f"--teacher_backbone={args.teacher_backbone}", args.teacher_backbone != args.backbone),
            (f"--epochs={args.epochs}", args.epochs is not None),
            (f"--popularity_groups={args.popularity_groups}", args.popularity_groups),
            (f"--other_weights=\"{args.other_weights_text}\"", args.other_weights_text),
            ("--auto_rows", args.auto_rows and not args.tune),
            (f"--method_settings=\"{args.method_settings_text}\"", args.method_settings_text),
            (f"--config_files=\"{' '.join(args.config_files)}\"", args.config_files),
        ) if given]
        return "".join(f" {option}" for option in extra)


def summary_entry(cells):
    """One row of :meth:`Report.summary`: each test metric's mean and standard deviation over
    ``cells`` (one per seed), the first cell's setting, the seeds, and the means of the
    AVERAGED_FIELDS the cells have."""
    entry = {"seeds": len(cells)}
    for metric in cells[0]["test"]:
        values = [cell["test"][metric] for cell in cells]
        # one seed measures no spread: None, not a zero standard deviation
        entry[metric] = (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None)
    entry["setting"] = cells[0].get("setting", {})
    entry["seed_values"] = [cell["seed"] for cell in cells]
    for field in AVERAGED_FIELDS:
        values = [cell[field] for cell in cells if cell.get(field) is not None]
        entry[field] = statistics.mean(values) if values else None
    return entry
