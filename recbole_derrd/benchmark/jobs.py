"""
recbole_derrd.benchmark.jobs
############################
Running a table's cells: one ordered pool of jobs (each seed's teacher, the searched cells,
the rows beside the search), shared between the processes of one benchmark command (the same
command started twice, or one ``--run_seeds`` each) through a lock per cell; a seed's teacher
trained again where its checkpoint is gone while a distiller of the seed still needs it.
"""

import contextlib
import functools
import hashlib
import os

from tqdm import tqdm

from recbole_derrd.benchmark import inference
from recbole_derrd.benchmark.cells import exclusive_lock, retrained_teacher_cell, teacher_checkpoint
from recbole_derrd.benchmark.methods import DISTILLERS, TUNING_ORDER, cell_key
from recbole_derrd.benchmark.training import train_cell


class Runner:
    """Trains the missing cells of one table (``args``: its command's options) into ``store``,
    with the settings of ``plan``; ``work``: the table's work folder (checkpoints, locks)."""

    def __init__(self, args, store, plan, work):
        from recbole_derrd.teacher.loading import size_parameters

        self.args = args
        self.store = store
        self.plan = plan
        self.work = work
        self.size_parameters = size_parameters

    @property
    def cells(self):
        return self.store.cells

    def run(self):
        """Every cell of the command (its seeds, or --run_seeds), then the inference times."""
        methods = [method for method in TUNING_ORDER if method in self.args.methods]
        jobs = []
        for seed in self.args.run_seed_values:
            jobs += self.method_jobs([seed], self.args.sizes, methods)
            jobs.append((seed, functools.partial(self.plan.beside_search_cells, seed)))
        self.run_jobs(jobs)
        for seed in self.args.seed_values:
            self.time_inference(seed)
        self.store.save()

    def time_inference(self, seed):
        """Time the models of ``seed`` not timed yet (:func:`.inference.time_inference`)."""
        inference.time_inference(self.store, self.args, self.work, seed)

    def method_jobs(self, seeds, sizes, methods):
        """The jobs (see :meth:`run_jobs`) of ``methods`` (in TUNING_ORDER) at ``seeds`` and
        ``sizes``: ``teacher`` once per seed, each other method's cells at its settings
        (:meth:`.plan.Plan.settings`) per size."""
        jobs = []
        for seed in seeds:
            if "teacher" in methods:
                jobs.append((seed, None))
            for size in sizes:
                jobs += [(seed, functools.partial(self.plan.method_cells, method, seed, size))
                         for method in methods if method != "teacher"]
        return jobs

    def run_jobs(self, jobs):
        """Run every cell of ``jobs``, each ``(seed, cells)``: ``cells`` None for the seed's
        teacher, else a function returning the job's cells (:meth:`run_missing_cell`
        arguments) that raises RuntimeError while a search its settings come from has not
        finished. Every cell is done when this returns.

        Earlier jobs come first: after each cell trained (here or by another process), this
        process looks again from the first job. A cell that another process of the same command
        is training now is left to it: this process goes on with the other cells, the methods
        whose settings are known (a method waits for the searches it takes settings from,
        TUNED_FROM), the rows beside the search, and the later seeds' cells whose settings are
        known; it waits for the other process only when nothing else is left to train. So two
        processes of one command share the trials between them, and one never sits idle while
        the other trains a cell it could do without."""
        pending = list(jobs)
        while pending:
            busy_cell, unknown_settings, pending_before = None, None, len(pending)
            for job in list(pending):
                seed, cells = job
                cells_before = len(self.cells)
                try:
                    job_cells = None if cells is None else cells()
                except RuntimeError as error:  # a search it takes settings from has not finished
                    unknown_settings = unknown_settings or error
                    continue
                done, wait_for = self.try_job(seed, job_cells)
                if done:
                    pending.remove(job)
                else:
                    busy_cell = busy_cell or wait_for
                if len(self.cells) != cells_before:
                    break  # a cell was trained (here or by the other process): look again from the first job
            else:
                if busy_cell:
                    # nothing left this process can train: wait for the other's cell, then look again
                    busy_cell()
                elif len(pending) == pending_before:  # e.g. --run_seeds of a later seed before the first seed's searches
                    raise unknown_settings

    def try_job(self, seed, cells):
        """Train the cells of one job of :meth:`run_jobs` (``cells``: the job's cells, None for
        the seed's teacher) that no other process is training. Returns whether the job is done,
        and else how to wait for one of its busy cells."""
        if cells is None:
            return self.ensure_teacher(seed, wait=False), functools.partial(self.ensure_teacher, seed)
        busy = [cell for cell in cells if not self.run_missing_cell(*cell, wait=False)]
        return not busy, busy and functools.partial(self.run_missing_cell, *busy[0])

    def run_missing_cell(self, method, size, seed, setting, note="", wait=True):
        """Train and test one student cell unless it is done, then save the cells. Returns
        whether the cell is done: always, unless ``wait`` is False and another process is
        training it now (then this returns at once, having trained nothing)."""
        key = cell_key(method, size, seed, setting)
        if key in self.cells:
            return True
        if method in DISTILLERS and not self.ensure_teacher(seed, wait=wait):
            return False
        with self.cell_lock(key, seed, wait=wait) as held:
            if not held:
                return False
            self.store.reload()  # another process may have finished it while this one waited
            if key in self.cells:
                return True
            model, parameters = self.method_parameters(method, seed, size)
            tqdm.write(f"running {key}{note}")
            self.cells[key] = self.run_cell(method, model, dict(parameters, **setting), seed, size, setting)
            self.store.save()
        tqdm.write(f"{key}: {self.args.metric} = {self.cells[key]['test'][self.args.metric]:.4f}")
        return True

    def ensure_teacher(self, seed, wait=True):
        """The teacher cell of ``seed``, trained again if its checkpoint was removed while
        some distiller of the seed still needs it. Returns whether it is there: always, unless
        ``wait`` is False and another process is training it now."""
        size = self.args.teacher_size
        key = cell_key("teacher", size, seed)

        def missing():
            return teacher_checkpoint(self.cells.get(key) or {}) is None

        if not missing():
            return True
        with self.cell_lock(key, seed, wait=wait) as held:
            if not held:
                return False
            self.store.reload()  # another process may have trained it while this one waited
            if missing():
                teacher_backbone = self.args.teacher_backbone
                parameters = self.size_parameters(teacher_backbone, size)
                self.cells[key] = retrained_teacher_cell(
                    self.cells.get(key), self.run_cell("teacher", teacher_backbone, parameters, seed, size))
                self.store.save()
                self.report_teacher(key)
        return True

    def report_teacher(self, key):
        metric, cell = self.args.metric, self.cells[key]
        tqdm.write(f"{key}: {metric} = {cell['test'][metric]:.4f}")
        if "retrained" in cell:
            tqdm.write(f"warning: {key} retrained: {metric} = {cell['retrained']['test'][metric]:.4f}, not the "
                       "reported teacher's; the seed's later distillers learn from the retrained one")

    @contextlib.contextmanager
    def cell_lock(self, key, seed, wait=True):
        """Hold an exclusive lock on cell ``key`` while it trains: another process of the same
        benchmark (``--run_seeds``, another ``--methods`` list on the same seed, or the same
        command started twice) that reaches the cell does not train it too or continue this
        process's live resume file. The lock goes with the process, however it ends. Yields
        whether it is held (:func:`.cells.exclusive_lock`)."""
        folder = os.path.join(self.work, f"seed{seed}")
        os.makedirs(folder, exist_ok=True)
        name = hashlib.sha1(key.encode()).hexdigest()[:16]
        with exclusive_lock(os.path.join(folder, f".cell-{name}.lock"), wait=wait) as held:
            yield held

    def method_parameters(self, method, seed, size):
        """(model name, keys) of a student method's cell, before any --tune setting."""
        backbone = self.args.backbone
        student_size = self.size_parameters(backbone, size)
        if method == "student":
            return backbone, dict(student_size)
        model, extra = DISTILLERS[method]
        teacher = self.cells.get(cell_key("teacher", self.args.teacher_size, seed), {})
        return model, dict(extra, student_model=backbone, **student_size,
                           teacher_checkpoint=teacher_checkpoint(teacher) or teacher.get("checkpoint"))

    def run_cell(self, method, model, parameters, seed, size, setting=None):
        """Train and test one cell (:func:`.training.train_cell`); its record."""
        record = train_cell(self.args, self.work, method, model, parameters, seed, size, setting)
        # distilled from a retrained teacher, not the reported one (retrained_teacher_cell)
        record["retrained_teacher"] = self.is_retrained_teacher(seed, parameters.get("teacher_checkpoint"))
        return record

    def is_retrained_teacher(self, seed, checkpoint):
        """Whether ``checkpoint`` is the file of seed ``seed``'s retrained (not reproduced) teacher."""
        teacher = self.cells.get(cell_key("teacher", self.args.teacher_size, seed), {})
        return checkpoint is not None and checkpoint == teacher.get("retrained", {}).get("checkpoint")
