"""
recbole_derrd.benchmark.training
################################
One cell of a table trained and tested with the plugin (:func:`recbole_derrd.run_recbole_derrd`):
its configuration (the protocol, the table's extra files and options, the seed's folder), the
continuation of an interrupted run of the very same cell (:func:`interrupted_run`), and the
record the cell keeps (test and per-user metrics, times, checkpoint).
"""

import glob
import os
import statistics
import time

import numpy as np
import torch
from tqdm import tqdm

from recbole_derrd.benchmark import REPO
from recbole_derrd.benchmark.cells import PER_USER_METRICS
from recbole_derrd.benchmark.methods import PROTOCOLS, WEIGHT_KEYS

#: The plugin's early-stopping rule a new cell is trained under, recorded in the cell: early
#: stopping counts an evaluation only once the distiller's transient phase is over (DE-RRD and
#: DE: once DE's routing has settled, ``Distiller.early_stopping_counts``). Cells without the
#: field were trained before it: the patience counted from the first epoch.
EARLY_STOPPING_RULE = "after-transient"
#: DE's default schedule a new cell is trained under, recorded in the cell: ``de_anneal_epochs:
#: ~`` anneals over the run's ``epochs`` up to 300 (:func:`recbole_derrd.model.experts.anneal_length`).
#: Cells without the field were trained before it: over the run's whole ``epochs``.
DE_SCHEDULE = "epochs-up-to-300"


def config_files(args):
    """The protocol's configuration file, then the table's --config_files."""
    return [os.path.join(REPO, PROTOCOLS[args.protocol])] + args.config_files


def base_config(args, work, seed):
    """The configuration every cell of ``seed`` shares (``work``: the table's work folder)."""
    config = {
        "seed": seed,
        "checkpoint_dir": os.path.join(work, f"seed{seed}"),
        "show_progress": False,
        "state": "ERROR",
        "gpu_id": args.gpu_id,
    }
    if args.epochs:
        config["epochs"] = args.epochs
    if args.data_path:
        config["data_path"] = args.data_path
    if args.popularity_groups:
        config["popularity_groups"] = args.popularity_groups
    return config


def timing_context(gpu_id):
    """What the times of a cell were measured on: the device and torch's CPU threads."""
    from recbole_derrd.benchmark.machine import machine_info

    info = machine_info("cuda" if gpu_id != "" and torch.cuda.is_available() else "cpu")
    return f"{info.get('gpu', info['cpu'])}, {info['threads']} torch thread(s)"


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
    cell's lock meanwhile (:meth:`recbole_derrd.benchmark.jobs.Runner.cell_lock`), so a file of a
    run still training in another process is never taken.
    """
    from recbole_derrd.config import Config
    from recbole_derrd.errors import CheckpointError
    from recbole_derrd.files.checkpoint import differing_settings, plain_config, read_resume_file
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


def run_resumable(model, dataset, files, config):
    """``run_recbole_derrd``, continuing an interrupted run of this cell where there is one
    (:func:`interrupted_run`). Returns its result, the resume file taken (or None) and when
    the training that counts started."""
    import recbole_derrd
    from recbole_derrd.errors import CheckpointError

    resume = interrupted_run(model, dataset, files, config)
    if resume is not None:
        tqdm.write(f"continuing the interrupted run {resume} (delete it to start the cell afresh)")
    start = time.time()
    try:
        return recbole_derrd.run_recbole_derrd(model, dataset, files, config, resume=resume), resume, start
    except CheckpointError as error:
        if resume is None:
            raise
        # e.g. the dataset files changed since: the file cannot continue, the cell starts afresh
        tqdm.write(f"cannot continue {resume}: {error}; the cell starts afresh")
        start = time.time()
        return recbole_derrd.run_recbole_derrd(model, dataset, files, config), None, start


def train_cell(args, work, method, model, parameters, seed, size, setting=None):
    """Train and test one cell (``model`` with ``parameters`` over the seed's base
    configuration); returns its record."""
    # the benchmark trains the student alone itself, as a row of its own
    config = dict(base_config(args, work, seed), compare_student_alone=False, **parameters)
    result, resume, start = run_resumable(model, args.dataset, config_files(args), config)
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
        # to 6 decimals, as the former JSON files held them
        "test_per_user": {metric: np.array([round(float(value), 6) for value in per_user[metric]])
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
        "early_stopping_rule": EARLY_STOPPING_RULE,
        "de_schedule": DE_SCHEDULE,
        "config": {key: value for key, value in parameters.items() if key != "teacher_checkpoint"},
    }
