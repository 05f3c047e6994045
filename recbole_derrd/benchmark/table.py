"""
recbole_derrd.benchmark.table
#############################
One benchmark table (a dataset, a student backbone, a protocol) and the benchmark command
(``run_scripts/benchmark.py``, :func:`main`): the table's parts put together, its cells
(:class:`~.cells.CellStore`), what it runs and reports (:class:`~.plan.Plan`), the runner of
its missing cells (:class:`~.jobs.Runner`) and its reports (:class:`~.report.Report`).
"""

import os
import sys

from recbole_derrd.benchmark.arguments import parse_args
from recbole_derrd.benchmark.cells import CellStore, training_record
from recbole_derrd.benchmark.jobs import Runner
from recbole_derrd.benchmark.plan import Plan
from recbole_derrd.benchmark.report import Report
from recbole_derrd.errors import UserError


class Table:
    """The cells of one (dataset, backbone, protocol) benchmark and what is done with them.

    ``read_only``: only read the finished cells (summarize.py): neither check nor write the
    table's training record, nor rewrite cell files of the former format."""

    def __init__(self, args, read_only=False):
        self.args = args
        self.name = table_name(args)
        self.folder = os.path.join(args.results, args.dataset)
        self.work = os.path.join(args.work, args.dataset, self.name)
        os.makedirs(self.folder, exist_ok=True)
        self.store = CellStore(self.folder, self.name)
        if not read_only:
            # refuse cells trained under other options before anything is written
            self.store.check_training_record(training_record(args))
            self.store.migrate()
        self.plan = Plan(args, self.store)
        self.runner = Runner(args, self.store, self.plan, self.work)
        self.report = Report(args, self.store, self.plan, self.folder, self.name)

    @property
    def cells(self):
        """key -> cell, as this process holds them (:attr:`.cells.CellStore.cells`)."""
        return self.store.cells

    @property
    def cells_file(self):
        return self.store.cells_file


def table_name(args):
    """The files' stem of a table: ``<backbone>-<protocol>``, or with a teacher of another model
    (--teacher_backbone) ``<backbone>-from-<teacher>-<protocol>``."""
    teacher = "" if args.teacher_backbone == args.backbone else f"-from-{args.teacher_backbone}"
    return f"{args.backbone}{teacher}-{args.protocol}"


def main(argv=None):
    """The benchmark command: run the table's missing cells (or, ``--report_only``, only time
    the models not timed yet), write its reports and print the markdown one."""
    args = parse_args(argv)
    sys.argv = sys.argv[:1]  # RecBole's Config must not read the benchmark's own flags
    if args.report_only and not os.path.isfile(os.path.join(args.results, args.dataset,
                                                            f"{table_name(args)}.cells.json")):
        raise UserError(f"--report_only: no cells of {args.dataset}, {args.backbone}, {args.protocol} under "
                        f"{args.results}: run the benchmark without --report_only first")
    table = Table(args)
    if args.report_only:
        for seed in args.seed_values:
            table.runner.time_inference(seed)
        table.store.save()
    else:
        table.runner.run()
    if not table.report.write():
        raise UserError(f"no cell of {table.cells_file} is one of this command's rows (its seeds, sizes, "
                        "methods and settings): nothing to report")
    with open(table.report.path + ".md") as handle:
        print(handle.read())
