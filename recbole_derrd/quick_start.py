"""
recbole_derrd.quick_start
#########################
The plugin's run and objective functions. Like RecBole's, but models and trainers are looked up
plugin-first, checkpoints are safe to load, runs resume where they stopped, and a distiller's
run ends with its test metrics side by side with its teacher's and with those of the same
student trained alone (:mod:`recbole_derrd.pipeline.student_alone`). ``recbole.quick_start`` is never
imported (it needs ray and knows RecBole's models only).

Multi-process runs follow RecBole's ``run``: :func:`run` spawns ``nproc`` processes, each runs
:func:`run_recbole_derrd` with its ``local_rank``, and the first one's result is returned.
"""

import logging
import os
import sys
from collections.abc import MutableMapping
from logging import getLogger

import torch.distributed as dist
import torch.multiprocessing as mp

from recbole.utils import get_environment, init_seed, set_color
from recbole.utils import init_logger as recbole_init_logger

from recbole_derrd.files.checkpoint import check_resume_split, read_checkpoint, read_resume_file
from recbole_derrd.files.locks import holds_resumed_run_files
from recbole_derrd.config import Config, config_from_plain
from recbole_derrd.data.dataset import TrainingSplit
from recbole_derrd.pipeline.distributed import check_launch_settings, is_distributed
from recbole_derrd.errors import UserError
from recbole_derrd.data.per_user import PerUserRecorder
from recbole_derrd.pipeline.training import (  # noqa: F401 (evaluate_model: API)
    build_model,
    evaluate_model,
    is_distiller,
    parameter_count,
    prepare_data,
    prepare_distiller_teacher,
    prepare_run,
)
from recbole_derrd.data.popularity import PopularityGroupRecorder
from recbole_derrd.pipeline.student_alone import compare_student_alone, format_change, relative_change
from recbole_derrd.pipeline.teacher_quality import validate_teacher
from recbole_derrd.teacher.loading import read_teacher_checkpoint
from recbole_derrd.pipeline.weight_search import refuse_automatic_weights, resolve_automatic_weights


def init_logger(config):
    """RecBole's logger set-up, once per run: the previous run's RecBole handlers are closed
    and replaced (RecBole's ``basicConfig`` would otherwise keep the first run's log file);
    handlers installed by others (pytest, the user) are kept. The log folder is created first,
    race-free: the processes of a multi-process run set up their loggers at the same moment,
    and RecBole's check-then-create fails in all but one of them."""
    os.makedirs(os.path.join("log", config["model"]), exist_ok=True)
    root = logging.getLogger()
    foreign = [handler for handler in root.handlers if not getattr(handler, "recbole_derrd", False)]
    for handler in list(root.handlers):
        root.removeHandler(handler)
        if handler not in foreign:
            handler.close()
    recbole_init_logger(config)
    for handler in root.handlers:
        handler.recbole_derrd = True
    for handler in foreign:
        root.addHandler(handler)


def comparison_table(rows, columns):
    """A plain-text table: ``rows`` is a list of (label, values...)."""
    table = [columns] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in table]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def student_teacher_comparison(model, student_result, teacher_result, alone=None, teacher_valid=None):
    """Test metrics and inference parameter counts of a distilled student and its teacher and,
    given ``alone`` (a :class:`~recbole_derrd.pipeline.student_alone.StudentAloneComparison`), of the
    same student trained alone, with the best validation score of both students and, given
    ``teacher_valid`` (:class:`~recbole_derrd.pipeline.teacher_quality.TeacherValidation`), the
    teacher's."""
    student_params = parameter_count(model)
    teacher_params = parameter_count(model.teacher.model)
    columns = ["", f"teacher ({model.teacher.name})",
               f"distilled student ({type(model).__name__}: {type(model.student).__name__})"]
    if alone is not None:
        columns.append(f"student alone ({alone.model_name})")
    columns.append("distilled/teacher")
    if alone is not None:
        columns.append("distilled vs alone")

    def row(label, teacher, student, student_alone, cell):
        """A table row; ``teacher`` None: not measured."""
        cells = [label, "-" if teacher is None else cell(teacher), cell(student)]
        if alone is not None:
            cells.append(cell(student_alone))
        cells.append(f"{student / teacher:.3f}" if teacher else "-")
        if alone is not None:
            cells.append(format_change(relative_change(student, student_alone)))
        return cells

    def count(value):
        return f"{value:,}"

    def metric(value):
        return f"{value:.4f}"

    rows = [row("parameters", teacher_params, student_params,
                None if alone is None else alone.parameters, count)]
    for name, value in student_result.items():
        alone_value = None if alone is None else alone.test_result[name]
        rows.append(row(name, teacher_result[name], value, alone_value, metric))
    teacher_score = None if teacher_valid is None else teacher_valid.teacher_score
    if alone is not None:
        rows.append(row(f"valid {alone.valid_metric} (best)", teacher_score, alone.distilled_valid_score,
                        alone.alone_valid_score, metric))
    elif teacher_valid is not None:
        rows.append(row(f"valid {teacher_valid.valid_metric} (best)", teacher_score,
                        teacher_valid.student_score, None, metric))
    return comparison_table(rows, columns)


@holds_resumed_run_files  # a resumed run's files are its own, for the whole run
def run_recbole_derrd(
    model=None,
    dataset=None,
    config_file_list=None,
    config_dict=None,
    saved=True,
    queue=None,
    resume=None,
):
    r"""Train and test a model (a distiller of this plugin or a RecBole built-in) on a dataset.

    Args:
        model (str): model name, e.g. ``DERRD`` or ``BPR``.
        dataset (str): dataset name.
        config_file_list (list of str): YAML files.
        config_dict (dict): parameters.
        saved (bool): save checkpoints (and test the best one).
        queue: multiprocessing queue for the result (distributed runs).
        resume (str): resume file of an interrupted run of the same model, dataset and
            settings (or the best-model file it sits beside): the run continues from the epoch
            it stopped in.

    Returns:
        dict: ``best_valid_score``, ``valid_score_bigger``, ``best_valid_result``,
        ``test_result``, ``test_per_user`` (each top-k metric per test user, in the
        evaluation's order: :mod:`recbole_derrd.data.per_user`), ``test_popularity_result`` (test
        Recall@k by item-popularity group with ``popularity_groups`` > 0, else None:
        :mod:`recbole_derrd.data.popularity`), ``train_loss``, ``checkpoint``,
        ``resume_file`` (None when the run adopted its weight search's chosen trial) and
        ``weight_search`` (the report of the search of the loss weights set
        to ``auto``, or None: :mod:`recbole_derrd.pipeline.weight_search`); for a distiller also
        ``teacher_test_result``, ``student_parameters``, ``teacher_parameters``,
        ``teacher_checkpoint``, ``teacher_valid_score`` and ``teacher_worse_than_student`` (the
        teacher's validation score is below the student alone's, or without it the distilled
        student's: :mod:`recbole_derrd.pipeline.teacher_quality`) and, from the same student trained alone
        (``compare_student_alone``; None when off, or skipped in a multi-process run),
        ``student_alone_valid_result``, ``student_alone_test_result``,
        ``student_alone_checkpoint`` and ``distilled_worse_than_alone`` (the distilled
        student's best validation score is the worse).
    """
    config = Config(model, dataset, config_file_list, config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)
    # loss weights set to 'auto' are chosen on the validation split before the run trains
    weight_search, chosen_trial, search_journal = resolve_automatic_weights(config, resume=resume, saved=saved)
    resumed = None
    if resume is not None:
        # fail on a bad resume file before loading any data
        resume, resumed = read_resume_file(resume, config)
    distiller = is_distiller(config)
    teacher_checkpoint = None
    if distiller and config["teacher_checkpoint"]:
        # read once, and fail on a bad teacher before loading any data
        teacher_checkpoint = read_teacher_checkpoint(config)

    def check_resumed_split(split):  # before an on-demand teacher is trained for it
        if resumed is not None:
            check_resume_split(resume, resumed, split.dataset, split.fingerprint)

    _, train_data, valid_data, test_data, model, trainer = prepare_run(
        config, teacher_checkpoint=teacher_checkpoint, before_teacher=check_resumed_split, log_model=True
    )
    if resume is not None:
        trainer.resume_checkpoint(resume)
    # a trial as long as the run is this run's training: adopted, not trained again (a run
    # that saves nothing tests its last epoch, as RecBole does, so it trains)
    adopt = chosen_trial is not None and saved
    if weight_search is not None and resume is None:
        weight_search["chosen_trial_adopted"] = adopt
    trainer.weight_search = weight_search  # saved with the checkpoints
    if adopt:
        logger.info(set_color("weight search", "yellow") + ": the chosen trial was as long as the "
                    "run, with its patience: it is this run's training (adopted, not trained again)")
        best_valid_score, best_valid_result = trainer.adopt_trial(chosen_trial, train_data)
        del chosen_trial  # its copy of the model and optimizer states
    else:
        best_valid_score, best_valid_result = trainer.fit(
            train_data, valid_data, saved=saved, show_progress=config["show_progress"]
        )
    popularity = PopularityGroupRecorder(trainer, train_data)  # a no-op unless popularity_groups > 0
    with PerUserRecorder(trainer) as per_user_test, popularity:
        test_result = trainer.evaluate(
            test_data, load_best_model=saved, show_progress=config["show_progress"]
        )
    logger.info(
        "The running environment of this training is as follows:\n"
        + get_environment(config).draw()
    )
    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    result = {
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "test_per_user": per_user_test.values,
        "test_popularity_result": popularity.report(),  # None unless popularity_groups > 0
        "train_loss": dict(trainer.train_loss_dict),
        "train_epoch_seconds": list(trainer.epoch_seconds),
        "train_epoch_diagnostics": list(getattr(trainer, "epoch_diagnostics", [])),
        "parameters": parameter_count(model),
    }
    if distiller:
        teacher_result = evaluate_model(config, model.teacher.model, train_data, test_data)
        alone = None
        if config["compare_student_alone"]:
            # after the distilled student's test, in a preserved random state: the distilled
            # run's results are the same with the comparison on or off
            alone = compare_student_alone(config, model, trainer.training_split, train_data,
                                          valid_data, test_data, best_valid_result)
        teacher_valid = validate_teacher(config, model, train_data, valid_data, best_valid_result, alone)
        title = "student vs teacher" + (" and student alone" if alone is not None else "")
        table = student_teacher_comparison(model, test_result, teacher_result, alone, teacher_valid)
        if alone is not None and alone.loss_note:
            table += f"\n({alone.loss_note})"
        table += teacher_valid.table_note()
        logger.info(set_color(title, "yellow") + " (test set, same split):\n" + table)
        teacher_valid.warn_if_worse()
        if alone is not None and alone.distilled_is_worse:
            logger.warning(alone.warning_message())
        result.update(
            teacher_test_result=teacher_result,
            student_parameters=parameter_count(model),
            teacher_parameters=parameter_count(model.teacher.model),
            teacher_checkpoint=config["teacher_checkpoint"],
            **teacher_valid.result_entries(),
            # the weights this run trained with (``auto`` ones as chosen), for its records
            loss_weights={key: config[key] for key in type(model).loss_weight_keys},
        )
        result.update(
            student_alone_valid_result=None,
            student_alone_test_result=None,
            student_alone_checkpoint=None,
            distilled_worse_than_alone=None,
        )
        if alone is not None:
            result.update(
                student_alone_valid_result=alone.valid_result,
                student_alone_test_result=alone.test_result,
                student_alone_checkpoint=alone.checkpoint,
                distilled_worse_than_alone=alone.distilled_is_worse,
            )
    result["checkpoint"] = trainer.saved_model_file if saved else None
    result["resume_file"] = trainer.resume_file if saved else None
    result["weight_search"] = weight_search
    if search_journal is not None:
        # the run is tested and compared: its search is done (until now an interruption
        # found the trials in the journal)
        search_journal.remove()
    if is_distributed(config):
        # every process done before any tears its connections down: a gloo peer that exits
        # while another still talks to it can abort ("terminate called without an active exception")
        dist.barrier()
        dist.destroy_process_group()
    if config["local_rank"] == 0 and queue is not None:
        queue.put(result)
    return result


def run_recbole_derrds(rank, *args):
    """One process of a multi-process run (``mp.spawn`` target): :func:`run_recbole_derrd` with
    ``local_rank`` set to ``rank``. The last argument holds its keyword arguments."""
    kwargs = args[-1]
    if not isinstance(kwargs, MutableMapping):
        raise ValueError(f"The last argument must be a dict of keyword arguments, got {type(kwargs)}")
    kwargs["config_dict"] = dict(kwargs.get("config_dict") or {}, local_rank=rank)
    try:
        run_recbole_derrd(*args[:-1], **kwargs)
    except UserError as error:
        # the launching process reports it as the user error it is, not as a traceback
        if kwargs.get("queue") is not None:
            kwargs["queue"].put({"user_error": str(error), "rank": rank})
        raise


@holds_resumed_run_files
def run(
    model=None,
    dataset=None,
    config_file_list=None,
    config_dict=None,
    saved=True,
    resume=None,
    nproc=1,
    world_size=-1,
    ip="localhost",
    port="5678",
    group_offset=0,
):
    r"""Entry point of ``run_scripts/run.py``: one process, or RecBole's multi-process mode.

    Args:
        model, dataset, config_file_list, config_dict, saved, resume: as for
            :func:`run_recbole_derrd`.
        nproc (int): processes started on this machine (one per GPU with ``dist_backend``
            ``nccl``).
        world_size (int): processes on all machines; -1: ``nproc`` (one machine).
        ip (str), port (str or int): address of the machine running global rank 0.
        group_offset (int): global rank of this machine's first process.

    Returns:
        dict: the result of the (first) process, as :func:`run_recbole_derrd`'s.
    """
    if nproc == 1 and world_size <= 0:
        return run_recbole_derrd(
            model=model,
            dataset=dataset,
            config_file_list=config_file_list,
            config_dict=config_dict,
            saved=saved,
            resume=resume,
        )
    # Bad settings fail here, once, before any process starts.
    config = Config(model, dataset, config_file_list, config_dict)
    world_size = check_launch_settings(
        config["dist_backend"], nproc, world_size, ip, port, group_offset, config["gpu_id"]
    )
    if resume is not None:
        read_resume_file(resume, config)

    queue = mp.get_context("spawn").SimpleQueue()
    config_dict = dict(
        config_dict or {},
        world_size=world_size,
        ip=ip,
        port=port,
        nproc=nproc,
        offset=group_offset,
    )
    kwargs = {"config_dict": config_dict, "saved": saved, "queue": queue, "resume": resume}
    try:
        mp.spawn(
            run_recbole_derrds,
            args=(model, dataset, config_file_list, kwargs),
            nprocs=nproc,
            join=True,
        )
    except Exception:
        while not queue.empty():
            report = queue.get()
            if "user_error" in report:
                raise UserError(f"process {report['rank']}: {report['user_error']}") from None
        raise
    return None if queue.empty() else queue.get()


def objective_function(config_dict=None, config_file_list=None, saved=True):
    r"""Objective of RecBole's ``HyperTuning`` for this plugin's models (and RecBole's): trains
    with ``config_dict`` and reports the validation score. No ray needed. A loss weight set to
    ``auto`` is refused: the tuner chooses among the values its parameter file gives."""
    config = Config(config_dict=config_dict, config_file_list=config_file_list)
    # a tuner's trial trains the values it is given: a search inside every trial would
    # multiply the cost unseen
    refuse_automatic_weights(config, "hyperparameter tuning (its trials train the values they are given)")
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logging.getLogger().setLevel(logging.ERROR)
    _, train_data, valid_data, test_data, _, trainer = prepare_run(config)
    best_valid_score, best_valid_result = trainer.fit(train_data, valid_data, verbose=False, saved=saved)
    test_result = trainer.evaluate(test_data, load_best_model=saved)
    return {
        "model": config["model"],
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
    }


def load_data_and_model(model_file, trust_checkpoint=False):
    r"""Load the data, splits and model of a checkpoint written by this plugin (for a RecBole
    checkpoint, pass ``trust_checkpoint=True``: it unpickles Python objects).

    Returns:
        tuple: ``(config, model, dataset, train_data, valid_data, test_data)``.
    """
    checkpoint = read_checkpoint(model_file, trust=trust_checkpoint)
    config = config_from_plain(checkpoint["config"], overrides={"trust_checkpoint": trust_checkpoint})
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset, train_data, valid_data, test_data = prepare_data(config)
    split = TrainingSplit(train_data.dataset)
    teacher = prepare_distiller_teacher(config, split) if is_distiller(config) else None
    model = build_model(config, train_data.dataset, teacher=teacher, split=split)
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    return config, model, dataset, train_data, valid_data, test_data
