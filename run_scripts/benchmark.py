"""What distillation buys over training the small model alone, on RecBole's splits and evaluators:

    python run_scripts/benchmark.py --dataset=ml-100k --backbone=BPR --protocol=recbole
    python run_scripts/benchmark.py --dataset=ml-100k --backbone=LightGCN --protocol=paper --seeds=3
    python run_scripts/benchmark.py --dataset=ml-1m --backbone=BPR --sizes=10,20,50   # downloads ml-1m

For each seed (a seed is a RecBole split and initialisation) it trains and tests the teacher
(``--teacher_size``), then at each student size: the student alone (the same backbone, small),
RD, CD, DE, RRD and DE-RRD, all distilled from that teacher with the plugin's defaults. It records
test metrics, inference parameters, full-sort inference time for all users (median of repeats,
all models of a seed timed side by side in one process), training time per epoch and the
student/teacher ratio of the main metric, then writes ``results/<dataset>/<backbone>-<protocol>``
``.md`` / ``.csv`` / ``.png`` (mean and standard deviation over seeds). Finished cells are kept in
``...-<protocol>.cells.json``: an interrupted benchmark resumes where it stopped, and a cell
interrupted in training continues from its last epoch (:func:`interrupted_run`).
"""

import argparse
import contextlib
import csv
import functools
import glob
import hashlib
import json
import os
import statistics
import sys
import time

import torch
from tqdm import tqdm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Every method, in the tables' order; the default --methods are the DE-RRD paper's (and RRD-topK),
#: UnKD and HTD (the later distillers) run when named.
METHODS = ["teacher", "student", "RD", "CD", "DE", "RRD", "RRD-topK", "DE-RRD", "UnKD", "HTD"]
DEFAULT_METHODS = METHODS[:8]
#: (model, extra keys) of every student method; the backbone and size are added per cell.
#: RRD-topK: RRD with the teacher's top-K as the interesting items instead of sampling them.
DISTILLERS = {
    "RD": ("RD", {}),
    "CD": ("CD", {}),
    "DE": ("DERRD", {"use_rrd": False}),
    "RRD": ("DERRD", {"use_de": False}),
    "RRD-topK": ("DERRD", {"use_de": False, "rrd_sample_interesting": False}),
    "DE-RRD": ("DERRD", {}),
    "UnKD": ("UnKD", {}),
    "HTD": ("HTD", {}),
}
#: The keys that tell the methods of one model apart (DISTILLERS), never set per method.
IDENTITY_KEYS = {key for _, keys in DISTILLERS.values() for key in keys}
#: --tune: the search space of each method, searched on the validation split of the first seed,
#: the same number of trials (3) for every method. Values are explicit (not the plugin's current
#: defaults), so a later change of a default does not change what a stored trial means.
TUNING_GRIDS = {
    "student": [{"learning_rate": 0.001, "weight_decay": 0.0},
                {"learning_rate": 0.003, "weight_decay": 0.0},
                {"learning_rate": 0.001, "weight_decay": 1e-5}],
    "RD": [{"lambda_rd": value} for value in (0.01, 0.1, 1.0)],
    "CD": [{"lambda_cd": value} for value in (0.01, 0.1, 1.0)],
    "RRD": [{"lambda_rrd": value} for value in (0.001, 0.003, 0.01)],
    "DE-RRD": [{"lambda_de": value} for value in (0.001, 0.01, 0.1)],
    "UnKD": [{"lambda_unkd": value} for value in (0.01, 0.1, 1.0)],
    "HTD": [{"lambda_htd": value} for value in (1.0, 10.0, 100.0)],
}
#: --tune: settings taken from other methods' searches (method: [(source, keys), ...]), searched
#: after them. Every distiller trains its student with the student alone's chosen learning rate
#: and weight decay (the student's recipe is fixed first, distillation is tuned on top of it).
#: DE-RRD's lambda_rrd is RRD's choice (its own trials search lambda_de); DE alone uses
#: DE-RRD's lambda_de and RRD-topK RRD's lambda_rrd (no trials of their own: the report says so).
LEARNER_KEYS = ["learning_rate", "weight_decay"]
TUNED_FROM = {
    "RD": [("student", LEARNER_KEYS)],
    "CD": [("student", LEARNER_KEYS)],
    "RRD": [("student", LEARNER_KEYS)],
    "DE-RRD": [("student", LEARNER_KEYS), ("RRD", ["lambda_rrd"])],
    "DE": [("student", LEARNER_KEYS), ("DE-RRD", ["lambda_de"])],
    "RRD-topK": [("student", LEARNER_KEYS), ("RRD", ["lambda_rrd"])],
    "UnKD": [("student", LEARNER_KEYS)],
    "HTD": [("student", LEARNER_KEYS)],
}
#: The loss weights a method's cells are keyed by: a cell at the plugin's defaults is keyed by
#: their values when it ran, so a later change of a default never relabels an old cell.
WEIGHT_KEYS = {"RD": ["lambda_rd"], "CD": ["lambda_cd"], "DE": ["lambda_de"], "RRD": ["lambda_rrd"],
               "RRD-topK": ["lambda_rrd"], "DE-RRD": ["lambda_de", "lambda_rrd"],
               "UnKD": ["lambda_unkd"], "HTD": ["lambda_htd"]}
#: --tune: methods also run once (first seed) at the plugin's defaults, as a user gets them,
#: and with their weights chosen by the plugin's own search (``auto``: recbole_derrd.pipeline.weight_search).
DEFAULT_ROWS = ["RRD", "DE-RRD"]
AUTO_ROWS = {"RRD": {"lambda_rrd": "auto"}, "DE-RRD": {"lambda_rrd": "auto", "lambda_de": "auto"}}
#: The search's former default trial length (30 epochs, patience 5): rows run with it are kept
#: in the reports (not run again), beside those with trials as long as the run.
SHORT_TRIALS = {"weight_search_epochs": 30, "weight_search_stopping_step": 5}
#: Order of the searches within a seed (a method after the one it takes settings from).
TUNING_ORDER = ["teacher", "student", "RD", "CD", "RRD", "RRD-topK", "DE-RRD", "DE", "UnKD", "HTD"]
#: Per-user test metrics kept in each cell for the significance tests.
PER_USER_METRICS = ("ndcg@10", "recall@20", "hit@10")
PROTOCOLS = {
    "recbole": "properties/experiments/protocol_recbole.yaml",
    "paper": "properties/experiments/protocol_paper.yaml",
    "fixed": "properties/experiments/protocol_fixed_split.yaml",
}


def retrained_teacher_cell(former, retrained):
    """The teacher cell of a seed after its teacher was trained again (its checkpoint was
    removed), ``former`` being the cell it replaces (None: there was none).

    Retraining reproduces the teacher on the machine that trained it, but not always on another
    (other CPU kernels round differently, and training compounds it). A retrained teacher whose
    test metrics differ is not the teacher the seed's earlier distillers learnt from: the cell
    keeps reporting the former teacher and carries the retrained one under ``retrained``
    (its checkpoint teaches the seed's later cells, which are marked ``retrained_teacher``)."""
    if former is None:
        return retrained
    shared = set(former["test"]) & set(retrained["test"])
    if shared and all(former["test"][metric] == retrained["test"][metric] for metric in shared):
        # reproduced: only the file is new (the times stay those of the seed's machine)
        return dict(former, checkpoint=retrained["checkpoint"])
    kept = ("test", "valid_score", "epochs", "train_seconds", "checkpoint", "timing")
    return dict(former, retrained={field: retrained.get(field) for field in kept})


def teacher_checkpoint(cell):
    """The file a teacher cell teaches from: the reported teacher's if it is there, else the
    retrained one's (:func:`retrained_teacher_cell`); None if neither is."""
    for path in (cell.get("checkpoint"), cell.get("retrained", {}).get("checkpoint")):
        if path and os.path.isfile(path):
            return path
    return None


def format_value(value, spec, prefix=""):
    """``value`` formatted, or nothing where it was not measured (a spread over one seed)."""
    return "" if value is None else prefix + format(value, spec)


def timing_context(gpu_id):
    """What the times of a cell were measured on: the device and torch's CPU threads."""
    from recbole_derrd.benchmark.machine import machine_info

    info = machine_info("cuda" if gpu_id != "" and torch.cuda.is_available() else "cpu")
    return f"{info.get('gpu', info['cpu'])}, {info['threads']} torch thread(s)"


def cell_key(method, size, seed, setting=None):
    """A cell's name; ``setting`` (a --tune trial's keys) is part of it."""
    key = f"{method}|{size}|{seed}"
    return key + "|" + setting_label(setting) if setting else key


def setting_label(setting):
    """``{'lambda_rrd': 0.003}`` -> ``lambda_rrd=0.003`` (sorted keys)."""
    return ",".join(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
                    for key, value in sorted(setting.items()))


#: RecBole's learner defaults: the student alone's reference trial.
STUDENT_DEFAULTS = {"learning_rate": 0.001, "weight_decay": 0.0}


def plugin_defaults(method, backbone="BPR"):
    """The plugin's (and RecBole's learner) defaults of ``method``'s keys with the student
    ``backbone``: the distiller's YAML, then its backbone's layer over it where it has one
    (``properties/model/DERRD/NeuMF.yaml``: a NeuMF student's own weights), as a run gets them."""
    import yaml

    from recbole_derrd.settings.defaults import model_layers

    defaults = dict(STUDENT_DEFAULTS)
    if method in DISTILLERS:
        for path in model_layers(DISTILLERS[method][0], backbone):
            with open(path) as handle:
                defaults.update(yaml.safe_load(handle) or {})
    return defaults


def is_plugin_default(method, setting, backbone="BPR"):
    """Whether a trial's setting is what the plugin (or RecBole, for the student) uses by
    default for those keys with the student ``backbone``."""
    defaults = plugin_defaults(method, backbone)
    return all(defaults.get(key) == value for key, value in setting.items())


def default_weights(method, backbone="BPR"):
    """The setting of ``method``'s cell at the plugin's defaults with the student ``backbone``:
    its loss weights, explicit (``{}`` for the teacher and the student alone, which have none)."""
    defaults = plugin_defaults(method, backbone)
    return {key: defaults[key] for key in WEIGHT_KEYS.get(method, [])}


def is_automatic(setting):
    """Whether a cell's weights were chosen by the plugin's search (``auto``)."""
    return "auto" in setting.values()


@contextlib.contextmanager
def exclusive_lock(path, wait=True):
    """Hold an exclusive ``flock`` on ``path`` (created if missing) until the block ends; it
    is released when the process ends, however it ends. Yields whether it is held: always
    (``wait``, the default), or only if no other process holds it now (``wait=False``)."""
    import fcntl

    with open(path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def interrupted_run(model, dataset, config_files, config):
    """The resume file of an interrupted run of this very cell, or None.

    A run writes a resume file at the start of every epoch (``<model>-<date>.resume.pth`` in
    its ``checkpoint_dir``, marked finished when the run ends). A file qualifies when it is not
    finished, passes the checks of ``run.py --resume`` for this configuration
    (:func:`recbole_derrd.files.checkpoint.read_resume_file`) and its stored configuration agrees with
    this cell's on every key that decides what a model learns
    (:func:`recbole_derrd.files.checkpoint.differing_settings`): another weight, seed or learner
    setting never qualifies; of several, the newest. The cell then continues from the epoch it
    stopped in instead of starting again (a Gowalla cell trains for more than an hour here).
    Never qualifies: a cell with ``auto`` weights (its search continues from its own journal,
    :mod:`recbole_derrd.pipeline.search_journal`), or a file of a run that searched its weights; a file
    without the whole run's training record (written before files held it: the resumed
    cell's epochs and time would be those after the resume only). The benchmark holds the
    cell's lock meanwhile (:meth:`Benchmark.cell_lock`), so a file of a run still training in
    another process is never taken.
    """
    from recbole_derrd.files.checkpoint import differing_settings, plain_config, read_resume_file
    from recbole_derrd.config import Config
    from recbole_derrd.errors import CheckpointError
    from recbole_derrd.pipeline.weight_search import automatic_weight_keys

    final = Config(model, dataset, config_files, dict(config))
    if automatic_weight_keys(final):
        return None
    plain = plain_config(final)
    pattern = os.path.join(glob.escape(plain["checkpoint_dir"]), f"{glob.escape(model)}-*.resume.pth")
    for path in sorted(glob.glob(pattern), key=os.path.getmtime, reverse=True):
        try:
            _, state = read_resume_file(path, final)
        except CheckpointError:  # finished, another model or split, unreadable...
            continue
        whole_record = len(state.get("epoch_seconds") or []) == state["epoch"] + 1
        if whole_record and not state.get("weight_search") and not differing_settings(state["config"], plain):
            return path
    return None


def paired_difference(cells, baseline_cells, metric, resamples=10000, seed=0):
    """Mean per-user difference of ``metric`` (cells minus baseline cells), pooled over the
    seeds both have, with a Wilcoxon signed-rank p-value and a bootstrap 95% interval (users
    resampled within each seed). None when no seed has per-user values on both sides."""
    import numpy as np
    from scipy.stats import wilcoxon

    baseline_by_seed = {cell["seed"]: cell for cell in baseline_cells}
    differences, baseline_values = [], []
    for cell in cells:
        baseline = baseline_by_seed.get(cell["seed"])
        if baseline is None or metric not in cell.get("test_per_user", {}) \
                or metric not in baseline.get("test_per_user", {}):
            continue
        values = np.asarray(cell["test_per_user"][metric])
        reference = np.asarray(baseline["test_per_user"][metric])
        if values.shape != reference.shape:
            raise ValueError(f"seed {cell['seed']}: {len(values)} vs {len(reference)} test users")
        differences.append(values - reference)
        baseline_values.append(reference)
    if not differences:
        return None
    pooled = np.concatenate(differences)
    rng = np.random.default_rng(seed)
    totals = np.zeros(resamples)
    for group in differences:  # one resampling per seed (users stay in their split)
        for first in range(0, resamples, 1000):  # bounded memory on large test sets
            count = min(1000, resamples - first)
            picks = rng.integers(0, len(group), size=(count, len(group)))
            totals[first:first + count] += group[picks].sum(axis=1)
    means = totals / len(pooled)
    low, high = np.percentile(means, [2.5, 97.5])
    p_value = float(wilcoxon(pooled).pvalue) if np.any(pooled != 0) else 1.0
    return {"mean": float(pooled.mean()), "low": float(low), "high": float(high), "p": p_value,
            "users": len(pooled), "seeds": len(differences),
            "baseline_mean": float(np.concatenate(baseline_values).mean())}


def training_text(record):
    """A table's training record (Benchmark.training_record) as the options that give it."""
    files = " ".join(record.get("config_files") or []) or "none"
    epochs = record.get("epochs")
    return f"--config_files=\"{files}\" and " + (f"--epochs={epochs}" if epochs is not None else "no --epochs")


class Benchmark:
    """The cells of one (dataset, backbone, protocol) benchmark, persisted as JSON."""

    def __init__(self, args, check_training=True):
        """``check_training``: refuse cells trained under other options (check_training_record);
        False only to read the finished cells (summarize.py)."""
        from recbole_derrd.teacher.loading import size_parameters

        self.args = args
        self.size_parameters = size_parameters
        self.name = f"{args.backbone}-{args.protocol}"
        self.folder = os.path.join(args.results, args.dataset)
        self.cells_file = os.path.join(self.folder, f"{self.name}.cells.json")
        self.work = os.path.join(args.work, args.dataset, self.name)
        os.makedirs(self.folder, exist_ok=True)
        self.cells = {}
        if os.path.isfile(self.cells_file):
            with open(self.cells_file) as handle:
                self.cells = json.load(handle)
        # the cells as last read from or written to the file: a cell of self.cells that is not
        # the same object was set by this process since (cells are replaced, never edited in place)
        self.synced = dict(self.cells)
        if check_training:
            self.check_training_record()

    def training_record(self):
        """What every cell of the table trains under, besides its own settings: the extra
        configuration files and the --epochs override."""
        return {"config_files": [os.path.normpath(path) for path in self.args.config_files],
                "epochs": self.args.epochs}

    def check_training_record(self):
        """Refuse, before any work, to add cells or reports to a table whose cells trained under
        another configuration (e.g. a table capped at 100 epochs, run again with converged.yaml):
        its finished cells would be taken as this command's (``<table>.training.json``; a
        table without one takes this command's)."""
        from recbole_derrd.errors import UserError

        record_file = os.path.join(self.folder, f"{self.name}.training.json")
        wanted = self.training_record()
        with exclusive_lock(self.cells_file + ".lock"):  # two processes starting a table at once
            if not os.path.isfile(record_file):
                with open(record_file, "w") as handle:
                    json.dump(wanted, handle, indent=1, sort_keys=True)
                return
            with open(record_file) as handle:
                recorded = json.load(handle)
        if recorded != wanted:
            raise UserError(
                f"{self.cells_file} holds cells trained with {training_text(recorded)}, not "
                f"{training_text(wanted)} as this command asks: its finished cells would be "
                f"reported as this command's. Run with the table's own options, or move its "
                f"files ({self.name}.*) aside to start a new table.")

    @contextlib.contextmanager
    def saved_cells(self):
        """The cells in the file, under the file's lock (held until the block ends)."""
        with exclusive_lock(self.cells_file + ".lock"):
            saved = {}
            if os.path.isfile(self.cells_file):
                with open(self.cells_file) as handle:
                    saved = json.load(handle)
            yield saved

    def save(self):
        """Write the cells this process set since it last read or wrote the file, merged with
        those other processes of the same benchmark saved meanwhile (e.g. another seed run in
        parallel with --run_seeds), under a file lock: a cell another process saved since is not
        replaced by this process's older copy of it."""
        with self.saved_cells() as saved:
            changed = {key: cell for key, cell in self.cells.items() if self.synced.get(key) is not cell}
            self.cells = dict(saved, **changed)
            self.synced = dict(self.cells)
            temporary = self.cells_file + ".tmp"
            with open(temporary, "w") as handle:
                json.dump(self.cells, handle, indent=1, sort_keys=True)
            os.replace(temporary, self.cells_file)

    def config_files(self):
        return [os.path.join(REPO, PROTOCOLS[self.args.protocol])] + self.args.config_files

    def base_config(self, seed):
        config = {
            "seed": seed,
            "checkpoint_dir": os.path.join(self.work, f"seed{seed}"),
            "show_progress": False,
            "state": "ERROR",
            "gpu_id": self.args.gpu_id,
        }
        if self.args.epochs:
            config["epochs"] = self.args.epochs
        if self.args.data_path:
            config["data_path"] = self.args.data_path
        if self.args.popularity_groups:
            config["popularity_groups"] = self.args.popularity_groups
        return config

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

    def settings(self, method, seed, size):
        """The settings ``method`` runs with at ``seed``: without --tune the plugin's defaults
        (its current default weights, explicit: default_weights); with --tune every trial of
        its grid at the first seed, its chosen trial at the others (plus what it takes from
        another method's search, TUNED_FROM)."""
        extra = self.args.method_settings.get(method, {})
        return [dict(setting, **extra) for setting in self.searched_settings(method, seed, size)]

    def searched_settings(self, method, seed, size):
        """:meth:`settings` before the method's --method_settings."""
        if not self.args.tune:
            return [default_weights(method, self.args.backbone)]
        inherited = {}
        for source, keys in TUNED_FROM.get(method, []):
            if source in self.args.methods:
                chosen = self.chosen_setting(source, size)
                inherited.update({key: chosen[key] for key in keys})
        if method not in TUNING_GRIDS:
            return [inherited]
        if seed == self.args.seed_values[0]:
            return [dict(inherited, **trial) for trial in TUNING_GRIDS[method]]
        return [self.chosen_setting(method, size)]

    def trials(self, method, size):
        """The finished trials of ``method`` at the first seed, in grid order."""
        first = self.args.seed_values[0]
        keys = [cell_key(method, size, first, setting) for setting in self.settings(method, first, size)]
        return [self.cells[key] for key in keys if key in self.cells]

    def chosen_setting(self, method, size):
        """The trial with the best validation score (``valid_metric`` of the protocol) at the
        first seed; ties go to the earlier trial of the grid. Only once every trial of the
        grid has finished: a choice among some of them would be reported (or run at the
        other seeds) as the tuned setting."""
        trials = self.trials(method, size)
        grid = self.settings(method, self.args.seed_values[0], size)
        if len(trials) < len(grid):
            raise RuntimeError(f"{method}'s search has finished {len(trials)} of its {len(grid)} "
                               f"trials at seed {self.args.seed_values[0]}: nothing to choose yet")
        sign = 1 if trials[0].get("valid_score_bigger", True) else -1
        return max(trials, key=lambda cell: sign * cell["valid_score"])["setting"]

    def run_cell(self, method, model, parameters, seed, size, setting=None):
        from recbole_derrd import run_recbole_derrd
        from recbole_derrd.errors import CheckpointError

        # the benchmark trains the student alone itself, as a row of its own
        config = dict(self.base_config(seed), compare_student_alone=False, **parameters)
        resume = interrupted_run(model, self.args.dataset, self.config_files(), config)
        if resume is not None:
            tqdm.write(f"continuing the interrupted run {resume} (delete it to start the cell afresh)")
        start = time.time()
        try:
            result = run_recbole_derrd(model, self.args.dataset, self.config_files(), config, resume=resume)
        except CheckpointError as error:
            if resume is None:
                raise
            # e.g. the dataset files changed since: the file cannot continue, the cell starts afresh
            tqdm.write(f"cannot continue {resume}: {error}; the cell starts afresh")
            resume, start = None, time.time()
            result = run_recbole_derrd(model, self.args.dataset, self.config_files(), config)
        epoch_seconds = result["train_epoch_seconds"]
        per_user = result.get("test_per_user", {})
        search = result.get("weight_search")
        weights = result.get("loss_weights", {})
        return {
            "weight_search": None if not search else {
                "chosen": search["chosen"], "trial_count": search["trial_count"],
                "seconds": search["seconds"], "preparation_seconds": search["preparation_seconds"]},
            "method": method, "model": model, "size": size, "seed": seed,
            "setting": setting or {},
            "weights": {key: weights[key] for key in WEIGHT_KEYS.get(method, [])},
            "test": dict(result["test_result"]),
            "valid": dict(result["best_valid_result"] or {}),
            "valid_score": result["best_valid_score"],
            "valid_score_bigger": result["valid_score_bigger"],
            "test_per_user": {metric: [round(float(value), 6) for value in per_user[metric]]
                              for metric in PER_USER_METRICS if metric in per_user},
            "parameters": result["parameters"],
            "epochs": len(epoch_seconds),
            "train_seconds_per_epoch": statistics.median(epoch_seconds) if epoch_seconds else None,
            "train_seconds": sum(epoch_seconds),
            "wall_seconds": time.time() - start,  # of this process (a resumed cell: since the resume)
            "resumed_from": resume,
            "checkpoint": result["checkpoint"],
            "popularity": result.get("test_popularity_result"),  # None unless --popularity_groups
            "timing": timing_context(config.get("gpu_id")),
            "config": {key: value for key, value in parameters.items() if key != "teacher_checkpoint"},
            # distilled from a retrained teacher, not the reported one (retrained_teacher_cell)
            "retrained_teacher": self.is_retrained_teacher(seed, parameters.get("teacher_checkpoint")),
        }

    def is_retrained_teacher(self, seed, checkpoint):
        """Whether ``checkpoint`` is the file of seed ``seed``'s retrained (not reproduced) teacher."""
        teacher = self.cells.get(cell_key("teacher", self.args.teacher_size, seed), {})
        return checkpoint is not None and checkpoint == teacher.get("retrained", {}).get("checkpoint")

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
            self.reload()  # another process may have trained it while this one waited
            if missing():
                parameters = self.size_parameters(self.args.backbone, size)
                self.cells[key] = retrained_teacher_cell(
                    self.cells.get(key), self.run_cell("teacher", self.args.backbone, parameters, seed, size))
                self.save()
                tqdm.write(f"{key}: {self.args.metric} = {self.cells[key]['test'][self.args.metric]:.4f}")
                if "retrained" in self.cells[key]:
                    tqdm.write(f"warning: {key} retrained: {self.args.metric} = "
                               f"{self.cells[key]['retrained']['test'][self.args.metric]:.4f}, not the "
                               "reported teacher's; the seed's later distillers learn from the retrained one")
        return True

    @contextlib.contextmanager
    def cell_lock(self, key, seed, wait=True):
        """Hold an exclusive lock on cell ``key`` while it trains: another process of the same
        benchmark (``--run_seeds``, another ``--methods`` list on the same seed, or the same
        command started twice) that reaches the cell does not train it too or continue this
        process's live resume file. The lock goes with the process, however it ends. Yields
        whether it is held (:func:`exclusive_lock`)."""
        folder = os.path.join(self.work, f"seed{seed}")
        os.makedirs(folder, exist_ok=True)
        name = hashlib.sha1(key.encode()).hexdigest()[:16]
        with exclusive_lock(os.path.join(folder, f".cell-{name}.lock"), wait=wait) as held:
            yield held

    def reload(self):
        """Take the cells other processes saved meanwhile (theirs replace this process's)."""
        with self.saved_cells() as saved:
            self.cells = dict(self.cells, **saved)
            self.synced = dict(saved)

    def run(self):
        methods = [method for method in TUNING_ORDER if method in self.args.methods]
        jobs = []
        for seed in self.args.run_seed_values:
            jobs += self.method_jobs([seed], self.args.sizes, methods)
            jobs.append((seed, functools.partial(self.beside_search_cells, seed)))
        self.run_jobs(jobs)
        for seed in self.args.seed_values:
            self.time_inference(seed)
        self.save()

    def method_jobs(self, seeds, sizes, methods):
        """The jobs (see :meth:`run_jobs`) of ``methods`` (in TUNING_ORDER) at ``seeds`` and
        ``sizes``: ``teacher`` once per seed, each other method's cells at its settings
        (:meth:`settings`) per size."""
        jobs = []
        for seed in seeds:
            if "teacher" in methods:
                jobs.append((seed, None))
            for size in sizes:
                jobs += [(seed, functools.partial(self.method_cells, method, seed, size))
                         for method in methods if method != "teacher"]
        return jobs

    def method_cells(self, method, seed, size):
        return [(method, size, seed, setting) for setting in self.settings(method, seed, size)]

    def beside_search_cells(self, seed):
        """The cells beside the search at ``seed``: at the first seed (with --tune or --auto_rows)
        DEFAULT_ROWS at the plugin's defaults and AUTO_ROWS with ``auto`` weights, and every
        seed's --other_weights. With --tune the ``auto`` rows take the student alone's searched
        learner settings: a RuntimeError until that search has finished."""
        cells = []
        if (self.args.tune or self.args.auto_rows) and seed == self.args.seed_values[0]:
            for size in self.args.sizes:
                if self.args.tune and "student" in self.args.methods:
                    self.chosen_setting("student", size)  # raises until its search has finished
                cells += [(method, size, seed, setting,
                           f" (plugin defaults{', automatic weights' if is_automatic(setting) else ''})")
                          for method, setting in self.default_rows(size) if method in self.args.methods]
        return cells + [
            (method, size, seed, dict(weights, **self.args.method_settings.get(method, {})), " (other weights)")
            for size in self.args.sizes for method, weights in self.args.other_weights]

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
                if cells is None:
                    done = self.ensure_teacher(seed, wait=False)
                    wait_for = functools.partial(self.ensure_teacher, seed)
                else:
                    try:
                        job_cells = cells()
                    except RuntimeError as error:  # a search it takes settings from has not finished
                        unknown_settings = unknown_settings or error
                        continue
                    busy = [cell for cell in job_cells if not self.run_missing_cell(*cell, wait=False)]
                    done = not busy
                    wait_for = busy and functools.partial(self.run_missing_cell, *busy[0])
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
            self.reload()  # another process may have finished it while this one waited
            if key in self.cells:
                return True
            model, parameters = self.method_parameters(method, seed, size)
            tqdm.write(f"running {key}{note}")
            self.cells[key] = self.run_cell(method, model, dict(parameters, **setting), seed, size, setting)
            self.save()
        tqdm.write(f"{key}: {self.args.metric} = {self.cells[key]['test'][self.args.metric]:.4f}")
        return True

    def default_rows(self, size, short_trials=False):
        """(method, setting) of the rows beside the search: DEFAULT_ROWS at the plugin's (and
        RecBole's) defaults; AUTO_ROWS with ``auto`` weights and the student alone's chosen
        learner settings (what ``auto`` replaces is the weight search alone); with
        ``short_trials`` also AUTO_ROWS with SHORT_TRIALS (reported where they were run). A
        table without --tune: the table's own learner settings (its cells are the defaults)."""
        rows = [(method, default_weights(method, self.args.backbone)) for method in DEFAULT_ROWS]
        if not self.args.tune:
            learner = {}  # the table's own learner settings, those of its student alone
        else:
            try:
                learner = {key: self.chosen_setting("student", size)[key] for key in LEARNER_KEYS}
            except RuntimeError:  # the student's search has not run
                learner = None
        if learner is not None:
            rows += [(method, dict(learner, **weights)) for method, weights in AUTO_ROWS.items()]
            if short_trials:
                rows += [(method, dict(learner, **weights, **SHORT_TRIALS)) for method, weights in AUTO_ROWS.items()]
        return [(method, dict(setting, **self.args.method_settings.get(method, {}))) for method, setting in rows]

    def default_setting(self, method):
        """``method``'s cells at the plugin's defaults: its default weights and --method_settings."""
        return dict(default_weights(method, self.args.backbone), **self.args.method_settings.get(method, {}))

    def reported_cells(self, method, size):
        """The cells a row of the results table averages: one per seed, at the chosen setting
        (--tune) or the defaults."""
        setting = self.default_setting(method)
        if self.args.tune and method != "teacher":
            try:
                setting = (self.chosen_setting(method, size) if method in TUNING_GRIDS
                           else self.settings(method, self.args.seed_values[0], size)[0])
            except RuntimeError:  # its search (or the one it depends on) has not finished
                return []
        keys = [cell_key(method, size, seed, setting) for seed in self.args.seed_values]
        return [self.cells[key] for key in keys if key in self.cells]

    def cell_model(self, cell, base_config, dataset):
        """The backbone model of ``cell`` (a distiller's student, or a model trained alone)
        with its checkpoint's weights, in evaluation mode, and its configuration."""
        from recbole_derrd import Config
        from recbole_derrd.files.checkpoint import read_checkpoint
        from recbole_derrd.utils import get_model

        backbone = self.args.backbone
        config = Config(backbone, self.args.dataset, self.config_files(), dict(base_config, **cell["config"]),
                        parse_command_line=False)
        checkpoint = read_checkpoint(cell["checkpoint"], map_location=config["device"])
        state = {name[len("student."):]: value for name, value in checkpoint["state_dict"].items()
                 if name.startswith("student.")} or checkpoint["state_dict"]
        model = get_model(backbone)(config, dataset).to(config["device"]).eval()
        model.load_state_dict(state)
        return model, config

    def time_inference(self, seed):
        """Full-sort inference (scores of all items, then the top-k) for all users, every model
        of the seed side by side in this process: median over repeats."""
        from recbole.utils import init_seed

        from recbole_derrd import Config
        from recbole_derrd.data.dataset import create_dataset, data_preparation
        from recbole_derrd.model.backbones import backbone_of

        self.reload()  # cells another process timed meanwhile are not timed (and replaced) again
        keys = [key for key, cell in self.cells.items() if cell["seed"] == seed
                and "inference_seconds" not in cell and os.path.isfile(cell.get("checkpoint") or "")]
        if not keys:
            return
        backbone = self.args.backbone
        config = Config(backbone, self.args.dataset, self.config_files(),
                        self.base_config(seed), parse_command_line=False)
        init_seed(config["seed"], config["reproducibility"])
        train_data = data_preparation(config, create_dataset(config))[0]
        users = torch.arange(1, train_data.dataset.user_num, device=config["device"])
        models = {key: self.cell_model(self.cells[key], self.base_config(seed), train_data.dataset)[0]
                  for key in keys}
        k = max(config["topk"])
        chunk = max(1, config["eval_batch_size"] // train_data.dataset.item_num)
        times = {key: [] for key in models}
        with torch.no_grad():
            for _ in range(self.args.inference_repeats):
                for key, model in models.items():  # interleaved
                    scorer = backbone_of(model)
                    start = time.perf_counter()
                    for first in range(0, len(users), chunk):
                        scorer.score_users(users[first:first + chunk]).topk(k, dim=1)
                    if config["device"].type == "cuda":
                        torch.cuda.synchronize()
                    times[key].append(time.perf_counter() - start)
        for key, values in times.items():
            self.cells[key] = dict(self.cells[key], inference_seconds=statistics.median(values))
        self.save()  # before the next seed's reload

    # ------------------------------------------------------------------ report

    def summary(self):
        """{(method, size): {metric: (mean, std), ...}} over seeds."""
        rows = {}
        for method in METHODS:
            for size in [self.args.teacher_size] if method == "teacher" else self.args.sizes:
                cells = self.reported_cells(method, size)
                if cells:
                    rows[(method, size)] = cells
        summary = {}
        for (method, size), cells in rows.items():
            entry = {"seeds": len(cells)}
            for metric in cells[0]["test"]:
                values = [cell["test"][metric] for cell in cells]
                # one seed measures no spread: None, not a zero standard deviation
                entry[metric] = (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None)
            entry["setting"] = cells[0].get("setting", {})
            entry["seed_values"] = [cell["seed"] for cell in cells]
            for field in ("parameters", "inference_seconds", "train_seconds_per_epoch", "epochs",
                          "train_seconds"):
                values = [cell[field] for cell in cells if cell.get(field) is not None]
                entry[field] = statistics.mean(values) if values else None
            summary[(method, size)] = entry
        return summary

    def write_reports(self):
        summary = self.summary()
        if not summary:
            return
        metric = self.args.metric
        teacher = summary.get(("teacher", self.args.teacher_size))
        metrics = sorted({m for entry in summary.values() for m in entry if "@" in m},
                         key=lambda m: (m.split("@")[0], int(m.split("@")[1])))
        order = {method: index for index, method in enumerate(METHODS)}
        keys = sorted(summary, key=lambda item: (item[0] != "teacher", item[1], order[item[0]]))
        path = os.path.join(self.folder, self.name)
        with open(path + ".csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["method", "size", "seeds"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
                            + ["parameters", "inference_seconds", "train_seconds_per_epoch", "epochs",
                               f"{metric}_ratio_to_teacher", "train_seconds_ratio_to_student"])
            for method, size in keys:
                entry = summary[(method, size)]
                ratio = self.ratio_to_teacher(entry, metric)
                writer.writerow([method, size, entry["seeds"]]
                                + [format_value(entry[m][i], ".5f") for m in metrics for i in (0, 1)]
                                + [entry["parameters"], entry["inference_seconds"],
                                   entry["train_seconds_per_epoch"], entry["epochs"], ratio,
                                   self.training_cost_ratio(method, size)])
        self.write_markdown(path + ".md", summary, keys, metrics)
        self.plot(path + ".png", summary, teacher)

    def same_seed_mean(self, method, size, seeds, metric):
        """Mean ``metric`` of ``method``'s reported cells at ``seeds`` only (None if it has none
        there): a row run at fewer seeds than the table is compared with the same seeds."""
        values = [cell["test"][metric] for cell in self.reported_cells(method, size) if cell["seed"] in seeds]
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
                           for cell in self.reported_cells("student", student_size)}
        ratios = [cell["train_seconds"] / student_seconds[cell["seed"]]
                  for cell in self.reported_cells(method, size)
                  if cell.get("train_seconds") and student_seconds.get(cell["seed"])]
        return statistics.mean(ratios) if ratios else None

    def write_markdown(self, path, summary, keys, metrics):
        metric, args = self.args.metric, self.args
        shown = [m for m in metrics if m.split("@")[1] in ("5", "10", "20")]
        lines = [f"# {args.dataset}, {args.backbone} backbone, {args.protocol} protocol", "",
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
                 "different machines, the two of one seed from the same one). `*`: the difference to the student alone is significant at "
                 "0.05 (paired Wilcoxon test over test users, below).", "",
                 "| method | size | seeds | " + " | ".join(shown) + " | params | inference | s/epoch | epochs | "
                 f"train s | train s vs student | {metric} vs teacher | {metric} vs student | setting |",
                 "|---|---|---|" + "---|" * len(shown) + "---|---|---|---|---|---|---|---|---|"]
        for method, size in keys:
            entry = summary[(method, size)]
            # both against the same seeds (a method run at fewer seeds than the teacher or the
            # student is not compared with other seeds' models), as the paired test is
            ratio = self.ratio_to_teacher(entry, metric)
            vs_teacher = f"{ratio:.3f}" if ratio is not None else "-"
            student = self.same_seed_mean("student", size, entry["seed_values"], metric)
            vs_student = (f"{100 * (entry[metric][0] / student - 1):+.1f}%"
                          if student and method not in ("teacher", "student") else "")
            if vs_student:
                test = paired_difference(self.reported_cells(method, size), self.reported_cells("student", size),
                                         metric)
                vs_student += "*" if test and test["p"] < 0.05 else ""
            cost_ratio = self.training_cost_ratio(method, size)
            inference = f"{1000 * entry['inference_seconds']:.1f} ms" if entry["inference_seconds"] else "-"
            per_epoch = f"{entry['train_seconds_per_epoch']:.2f}" if entry["train_seconds_per_epoch"] else "-"
            lines.append(
                f"| {method} | {size} | {entry['seeds']} | "
                + " | ".join(format_value(entry[m][0], ".4f") + format_value(entry[m][1], ".4f", prefix=" ± ")
                             for m in shown)
                + f" | {entry['parameters']:,.0f} | {inference} | {per_epoch} | {entry['epochs']:.0f} | "
                + (f"{entry['train_seconds']:.0f}" if entry.get("train_seconds") else "-")
                + f" | {f'{cost_ratio:.1f}x' if cost_ratio is not None and method != 'student' else ''}"
                + f" | {vs_teacher} | {vs_student} | {setting_label(entry['setting']) or '-'} |")
        lines.append("")
        lines += self.retrained_teacher_text()
        if args.tune:
            lines += self.tuning_text()
        lines += self.other_settings_text()
        lines += self.significance_text(summary)
        lines += self.popularity_text(keys)
        with open(path, "w") as handle:
            handle.write("\n".join(lines))

    def tuning_text(self):
        """The search behind the chosen settings: every trial of the first seed, its validation
        score and test metric, and its validation gain over the student alone at RecBole's
        defaults (the row the distilled student must beat)."""
        args, size = self.args, self.args.sizes[0]
        try:  # the student alone with the learner settings every distiller trains with
            reference = self.cells.get(cell_key("student", size, args.seed_values[0],
                                                self.chosen_setting("student", size)))
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
            trials = self.trials(method, size)
            if not trials:
                continue
            try:
                chosen = self.chosen_setting(method, size)
            except RuntimeError:  # its search has not finished: its trials so far, none chosen
                chosen = None
            for cell in trials:
                gain = (f"{100 * (cell['valid_score'] / reference['valid_score'] - 1):+.1f}%"
                        if reference else "-")
                marks = [word for word, flag in (("chosen", cell["setting"] == chosen),
                                                 ("defaults", is_plugin_default(method, cell["setting"], args.backbone)))
                         if flag]
                lines.append(f"| {method} | {setting_label(cell['setting'])} | {cell['valid_score']:.4f} | "
                             f"{gain} | {cell['test'][args.metric]:.4f} | {cell['epochs']} | "
                             f"{cell['train_seconds']:.0f} | {', '.join(marks)} |")
        lines += ["", f"Without a search (seed {args.seed_values[0]}): the plugin's defaults with RecBole's "
                  "learner defaults, and `auto` (the weights the plugin's own search chose, with the "
                  "student alone's chosen learner settings; its trials and their time; train s: the final "
                  "run (the chosen trial itself where the trials are as long as the run, as the run "
                  "adopts it); trials as long as the run unless the row says 30-epoch trials, the former "
                  "default). Validation gains relative to the chosen student alone.", "",
                  f"| method | valid score | valid vs student alone | test {args.metric} | epochs | train s |",
                  "|---|---|---|---|---|---|"]
        for method, setting in self.default_rows(size, short_trials=True):
            cell = self.cells.get(cell_key(method, size, args.seed_values[0], setting))
            if cell:
                gain = (f"{100 * (cell['valid_score'] / reference['valid_score'] - 1):+.1f}%"
                        if reference else "-")
                search = cell.get("weight_search")
                short = " of 30 epochs" if "weight_search_epochs" in setting else ""
                name = method + (f" (auto: {setting_label(search['chosen'])}; {search['trial_count']} "
                                 f"trials{short}, {search['seconds'] + search['preparation_seconds']:.0f} s)"
                                 if search else "")
                lines.append(f"| {name} | {cell['valid_score']:.4f} | {gain} | "
                             f"{cell['test'][args.metric]:.4f} | {cell['epochs']} | {cell['train_seconds']:.0f} |")
        return lines + [""]

    def tuning_text_keys(self):
        """The cells a --tune table reports in tuning_text: its searches' trials and the rows
        beside them (defaults, ``auto``), at the first seed (none without --tune)."""
        if not self.args.tune:
            return set()
        first, keys = self.args.seed_values[0], set()
        for size in self.args.sizes:
            for method in DISTILLERS:
                with contextlib.suppress(RuntimeError):  # a search it depends on has not finished
                    keys.update(cell_key(method, size, first, setting)
                                for setting in self.settings(method, first, size))
            keys.update(cell_key(method, size, first, setting)
                        for method, setting in self.default_rows(size, short_trials=True))
        return keys

    def other_settings_text(self):
        """Cells of this split at other weights than those the report shows elsewhere (e.g. run
        at a former default), kept and shown apart: the table above has the current defaults
        (or, with --tune, the chosen settings; the search and the rows beside it have theirs)."""
        args, metric = self.args, self.args.metric
        reported = {id(cell) for method in METHODS for size in self.args.sizes + [args.teacher_size]
                    for cell in self.reported_cells(method, size)}
        elsewhere = self.tuning_text_keys()
        groups = {}
        for key, cell in self.cells.items():
            if (cell["method"] in DISTILLERS and id(cell) not in reported and key not in elsewhere
                    and cell["seed"] in args.seed_values):
                label = setting_label(cell["setting"])
                groups.setdefault((METHODS.index(cell["method"]), cell["size"], label), []).append(cell)
        if not groups:
            return []
        lines = ["## Other weights on this split", "",
                 "Cells at other weights (or settings) than those the table above reports, "
                 "e.g. run at a former default; mean over the seeds run, against the table's student "
                 "alone of the same seeds" + (" (at its chosen setting)." if args.tune else "."), "",
                 f"| method | size | setting | seeds | test {metric} | vs student | test recall@20 | epochs | train s | "
                 "valid score vs student |", "|---|---|---|---|---|---|---|---|---|---|"]
        # the table's student alone of each size and seed (with --tune: at its chosen setting)
        student_of = {(size, student["seed"]): student for size in {size for _, size, _ in groups}
                      for student in self.reported_cells("student", size)}
        for (index, size, label), cells in sorted(groups.items()):
            students = [student_of.get((size, cell["seed"])) for cell in cells]
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
            lines.append(f"| {METHODS[index]} | {size} | {label or '-'} | {len(cells)} | {mean:.4f} | {gain} | {recall} | "
                         f"{statistics.mean(cell['epochs'] for cell in cells):.0f} | "
                         + (f"{statistics.mean(seconds):.0f}" if seconds else "-") + f" | {valid_gain} |")
        return lines + [""]

    def significance_text(self, summary):
        """Paired tests over test users (per-user metrics of the same rankings the evaluator
        scored), pooled over the seeds: DE-RRD and every distiller against the student alone,
        DE-RRD against the best competitor (RD or CD, by mean test metric)."""
        args, size = self.args, self.args.sizes[0]
        student = self.reported_cells("student", size)
        comparisons = [(method, "student") for method in METHODS if method in DISTILLERS]
        competitors = [method for method in ("RD", "CD") if (method, size) in summary]
        if competitors and ("DE-RRD", size) in summary:
            best = max(competitors, key=lambda method: summary[(method, size)][args.metric][0])
            comparisons.append(("DE-RRD", best))
        metrics = [metric for metric in (args.metric, "recall@20") if metric in PER_USER_METRICS]
        lines = ["## Significance (paired over test users)", "",
                 "Per-user differences pooled over the seeds (each user of each seed's test split "
                 "once; the two models of a pair ranked that user's candidates on the same split). "
                 "p: Wilcoxon signed-rank test (users with no difference left out); 95% interval of "
                 "the mean difference: bootstrap over users within each seed (10,000 resamples). "
                 "`yes`: p < 0.05.", "",
                 "| comparison | metric | mean difference | 95% interval | relative | p | significant |",
                 "|---|---|---|---|---|---|---|"]
        rows = 0
        for method, baseline in comparisons:
            cells = self.reported_cells(method, size)
            baseline_cells = student if baseline == "student" else self.reported_cells(baseline, size)
            for metric in metrics:
                test = paired_difference(cells, baseline_cells, metric)
                if test is None:
                    continue
                rows += 1
                relative = 100 * test["mean"] / test["baseline_mean"] if test["baseline_mean"] else 0.0
                lines.append(f"| {method} vs {baseline} | {metric} | {test['mean']:+.4f} | "
                             f"[{test['low']:+.4f}, {test['high']:+.4f}] | {relative:+.1f}% | "
                             f"{test['p']:.2g} | {'yes' if test['p'] < 0.05 else 'no'} |")
        return lines + [""] if rows else []

    def popularity_text(self, keys):
        """Test Recall@20 (or the protocol's largest k) within item-popularity groups
        (--popularity_groups), mean over the reported seeds of each row: does a distilled
        student serve the long tail as well as the head?"""
        rows = []
        for method, size in keys:
            cells = [cell.get("popularity") for cell in self.reported_cells(method, size)]
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

    def retrained_teacher_text(self):
        """Which seeds' teachers were trained again without reproducing the reported one, and
        which cells learnt from the retrained teacher (:func:`retrained_teacher_cell`)."""
        metric, lines = self.args.metric, []
        for cell in sorted(self.cells.values(), key=lambda cell: cell["seed"]):
            if ("retrained" not in cell or cell["method"] != "teacher" or cell.get("size") != self.args.teacher_size
                    or cell["seed"] not in self.args.seed_values):
                continue
            students = sorted(f"{other['method']} ({setting_label(other['setting']) or 'defaults'})"
                              for other in self.cells.values()
                              if other["seed"] == cell["seed"] and other.get("retrained_teacher"))
            lines.append(f"Seed {cell['seed']}'s teacher was trained again (its checkpoint was gone) and "
                         f"did not reproduce: test {metric} {cell['retrained']['test'][metric]:.4f} against the "
                         f"reported teacher's {cell['test'][metric]:.4f}. The table reports the teacher its "
                         "earlier cells learnt from; "
                         + (f"these learnt from the retrained one: {', '.join(students)}." if students
                            else "no cell has learnt from the retrained one."))
        return lines + [""] if lines else []

    def timing_text(self):
        """What the reported cells' times were measured on (older cells did not record it)."""
        contexts = {cell.get("timing", "not recorded") for cell in self.cells.values()
                    if cell["seed"] in self.args.seed_values}
        return "; ".join(sorted(contexts))

    def extra_arguments(self):
        """The command-line options that changed what was run, for the report's command."""
        args, extra = self.args, []
        if args.tune:
            extra.append("--tune")
        if args.data_path:
            extra.append(f"--data_path={args.data_path}")
        if args.methods != DEFAULT_METHODS:
            extra.append(f"--methods={','.join(args.methods)}")
        if args.teacher_size != 200:
            extra.append(f"--teacher_size={args.teacher_size}")
        if args.epochs is not None:
            extra.append(f"--epochs={args.epochs}")
        if args.popularity_groups:
            extra.append(f"--popularity_groups={args.popularity_groups}")
        if args.other_weights_text:
            extra.append(f"--other_weights=\"{args.other_weights_text}\"")
        if args.auto_rows and not args.tune:
            extra.append("--auto_rows")
        if args.method_settings_text:
            extra.append(f"--method_settings=\"{args.method_settings_text}\"")
        if args.config_files:
            extra.append(f"--config_files=\"{' '.join(args.config_files)}\"")
        return "".join(f" {option}" for option in extra)

    def plot(self, path, summary, teacher):
        """Two panels: test quality against student size, and against full-sort inference time
        (the teacher a point there, a dashed line on the left)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker

        metric = self.args.metric
        figure, (by_size, by_time) = plt.subplots(1, 2, figsize=(11, 4.5))
        sizes = sorted({size for method, size in summary if method != "teacher"})
        markers = dict(zip(METHODS[1:], "osv^<>DPX"))
        for offset, method in enumerate(METHODS[1:]):
            points = [(size, summary[(method, size)]) for size in sizes if (method, size) in summary]
            if not points:
                continue
            style = dict(marker=markers[method], capsize=3, label=method,
                         linewidth=2.5 if method in ("student", "DE-RRD") else 1,
                         color="black" if method == "student" else None)
            means = [entry[metric][0] for _, entry in points]
            spreads = [entry[metric][1] or 0.0 for _, entry in points]
            xs = [size * (1 + 0.015 * (offset - 3)) for size, _ in points]  # spread the markers
            line = by_size.errorbar(xs, means, yerr=spreads, **style)
            timed = [(1000 * entry["inference_seconds"], mean, spread)
                     for (_, entry), mean, spread in zip(points, means, spreads) if entry["inference_seconds"]]
            if timed:
                milliseconds, timed_means, timed_spreads = zip(*timed)
                by_time.errorbar(milliseconds, timed_means, yerr=timed_spreads, color=line[0].get_color(),
                                 **{key: value for key, value in style.items() if key != "color"})
        if teacher:
            spread = teacher[metric][1] or 0.0
            label = f"teacher (d={self.args.teacher_size})"
            by_size.axhline(teacher[metric][0], color="gray", linestyle="--", label=label)
            by_size.axhspan(teacher[metric][0] - spread, teacher[metric][0] + spread, color="gray", alpha=0.15)
            if teacher["inference_seconds"]:
                by_time.errorbar([1000 * teacher["inference_seconds"]], [teacher[metric][0]], yerr=[spread],
                                 marker="*", markersize=12, color="gray", linestyle="none", label=label)
        by_size.set_xscale("log")
        by_size.set_xticks(sizes)
        by_size.set_xticklabels([str(size) for size in sizes])
        by_size.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        by_size.set_xlim(min(sizes) / 1.6, max(sizes) * 1.6)
        by_size.set_xlabel("student size (embedding dimension)")
        by_time.set_xlabel("full-sort inference of all users (ms)")
        for axis in (by_size, by_time):
            axis.set_ylabel(f"test {metric}")
            axis.legend(fontsize=8, ncol=2)
        seeds = len(self.args.seed_values)
        figure.suptitle(f"{self.args.dataset}, {self.args.backbone}, {self.args.protocol} protocol "
                        f"({seeds} seed{'s' if seeds > 1 else ''}{'; bars: std' if seeds > 1 else ''})")
        figure.tight_layout()
        figure.savefig(path, dpi=120)
        plt.close(figure)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--backbone", default="BPR", choices=["BPR", "LightGCN", "NeuMF"])
    parser.add_argument("--protocol", default="recbole", choices=sorted(PROTOCOLS))
    parser.add_argument("--sizes", default="20", help="student sizes, comma-separated")
    parser.add_argument("--teacher_size", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (2020, 2021, ...)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"comma-separated, among {','.join(METHODS)}")
    parser.add_argument("--popularity_groups", type=int, default=0,
                        help="G > 0: also report test Recall@20 within G item-popularity groups")
    parser.add_argument("--metric", default="ndcg@10", help="the main metric")
    parser.add_argument("--epochs", type=int, default=None, help="override RecBole's epochs")
    parser.add_argument("--run_seeds", default="",
                        help="train only these seeds (comma-separated; default: all), e.g. one seed "
                             "per process, in parallel: the processes share the cells file")
    parser.add_argument("--report_only", action="store_true",
                        help="train nothing: write the reports from the cells already run")
    parser.add_argument("--tune", action="store_true",
                        help="search each method's weights on the first seed's validation split "
                             "(TUNING_GRIDS), then run the chosen settings at every seed")
    parser.add_argument("--other_weights", default="",
                        help="without --tune: also run these weights besides the defaults, e.g. "
                             "'RRD:lambda_rrd=0.001;RRD:lambda_rrd=0.01' (reported apart)")
    parser.add_argument("--auto_rows", action="store_true",
                        help="without --tune: also run RRD and DE-RRD (those among --methods) with "
                             "'auto' weights at the first seed, the plugin's own weight search (with "
                             "--tune they always run)")
    parser.add_argument("--method_settings", default="",
                        help="other keys than the weights for a distiller's every cell, part of its cells' "
                             "names, e.g. 'UnKD:unkd_topn=4' (a split where the default cannot run)")
    parser.add_argument("--config_files", default="", help="extra YAML files, space-separated")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--gpu_id", default="")
    parser.add_argument("--inference_repeats", type=int, default=5)
    parser.add_argument("--results", default=os.path.join(REPO, "results"))
    parser.add_argument("--work", default=os.path.join(REPO, ".bench", "benchmark"))
    args = parser.parse_args(argv)
    args.sizes_text = args.sizes
    args.sizes = [int(size) for size in args.sizes.split(",")]
    args.seed_values = [2020 + index for index in range(args.seeds)]
    args.run_seed_values = ([int(seed) for seed in args.run_seeds.split(",")] if args.run_seeds
                            else args.seed_values)
    if not set(args.run_seed_values) <= set(args.seed_values):
        parser.error(f"--run_seeds must be among the benchmark's seeds {args.seed_values}")
    args.methods = [method for method in args.methods.split(",") if method]
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose among {METHODS}")
    if any(method in DISTILLERS for method in args.methods) and "teacher" not in args.methods:
        args.methods.insert(0, "teacher")  # the distillers need it
    args.config_files = [path for path in args.config_files.split(" ") if path]
    args.other_weights_text = args.other_weights
    try:
        args.other_weights = parse_other_weights(args.other_weights, args.methods, args.backbone)
    except ValueError as error:
        parser.error(f"--other_weights: {error}")
    if args.other_weights and args.tune:
        parser.error("--other_weights is for tables without --tune (a --tune table has its grid)")
    args.method_settings_text = args.method_settings
    try:
        args.method_settings = parse_method_settings(args.method_settings, args.methods, args.backbone)
    except ValueError as error:
        parser.error(f"--method_settings: {error}")
    return args


def parse_method_settings(text, methods, backbone="BPR"):
    """``'UnKD:unkd_topn=4,unkd_num_pairs=3'`` -> ``{'UnKD': {'unkd_topn': 4, 'unkd_num_pairs': 3}}``.
    Keys of the distiller's own YAML other than its loss weights (tuned, or --other_weights),
    the learner's and those that tell the methods apart (IDENTITY_KEYS); a value is read as the
    type of the key's default (``1e-3`` a number where the default is one, YAML would read a
    string)."""
    import yaml

    parsed = {}
    for method, assignments in method_assignments(text, methods):
        defaults = plugin_defaults(method, backbone)
        for key, text_value in assignments:
            if key not in defaults or key in LEARNER_KEYS or key in IDENTITY_KEYS:
                raise ValueError(f"'{key}' is not a key of {method} to set (properties/model/"
                                 f"{DISTILLERS[method][0]}.yaml, not its weights, the learner's or "
                                 f"those that tell the methods apart: {sorted(IDENTITY_KEYS)})")
            if key in WEIGHT_KEYS.get(method, []):
                raise ValueError(f"{key} is a loss weight: --tune searches it, --other_weights sets it")
            value, default = yaml.safe_load(text_value), defaults[key]
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"{key} is True or False, not {text_value!r}")
            elif isinstance(default, (int, float)):
                try:
                    number = float(value)
                except (TypeError, ValueError):
                    raise ValueError(f"{key}={text_value!r} is not a number") from None
                value = int(number) if isinstance(default, int) and number.is_integer() else number
            parsed.setdefault(method, {})[key] = value
    return parsed


def cells_method_settings(cells):
    """The --method_settings a table's cells were run with: per distiller, the keys other than
    its weights and the learner's (and the search's trial length) that all its cells share."""
    ignored = set(LEARNER_KEYS) | set(SHORT_TRIALS)
    shared = {}
    for cell in cells.values():
        method = cell["method"]
        if method not in DISTILLERS:
            continue
        extra = {key: value for key, value in cell["setting"].items()
                 if key not in ignored and key not in WEIGHT_KEYS.get(method, [])}
        shared[method] = extra if method not in shared else {
            key: value for key, value in shared[method].items() if extra.get(key) == value}
    return {method: settings for method, settings in shared.items() if settings}


def parse_other_weights(text, methods, backbone="BPR"):
    """``'RRD:lambda_rrd=0.001;DE-RRD:lambda_de=0.1'`` -> ``[('RRD', {'lambda_rrd': 0.001}),
    ('DE-RRD', {'lambda_de': 0.1, 'lambda_rrd': <its default>})]``: every weight of the method
    explicit (the unnamed ones at their defaults), as its cells are keyed."""
    parsed = []
    for method, assignments in method_assignments(text, methods):
        weights = default_weights(method, backbone)
        for key, value in assignments:
            if key not in weights:
                raise ValueError(f"{method}'s weights are {WEIGHT_KEYS[method]}, not '{key}'")
            try:
                weights[key] = float(value)
            except ValueError:
                raise ValueError(f"{key}={value!r} is not a number") from None
        parsed.append((method, weights))
    return parsed


def method_assignments(text, methods):
    """``'RRD:a=1,b=2;UnKD:c=3'`` -> ``[('RRD', [('a', '1'), ('b', '2')]), ('UnKD', [('c', '3')])]``,
    each method a distiller among ``methods`` and each assignment ``key=value``."""
    parsed = []
    for item in filter(None, (part.strip() for part in text.split(";"))):
        method, _, assignments = item.partition(":")
        if method not in methods or method not in DISTILLERS:
            raise ValueError(f"'{method}' is not a distiller among --methods {methods}")
        pairs = []
        for assignment in filter(None, assignments.split(",")):
            key, equals, value = assignment.partition("=")
            if not equals or not value:
                raise ValueError(f"'{assignment}' is not key=value")
            pairs.append((key, value))
        parsed.append((method, pairs))
    return parsed


def main(argv=None):
    args = parse_args(argv)
    sys.argv = sys.argv[:1]  # RecBole's Config must not read the benchmark's own flags
    benchmark = Benchmark(args)
    if args.report_only:
        for seed in args.seed_values:
            benchmark.time_inference(seed)
        benchmark.save()
    else:
        benchmark.run()
    benchmark.write_reports()
    print(open(os.path.join(benchmark.folder, benchmark.name + ".md")).read())


if __name__ == "__main__":
    from recbole_derrd.cli import run_main

    run_main(main)
