"""
recbole_derrd.quick_start
#########################
The plugin's run and objective functions. Like RecBole's, but models and trainers are looked up
plugin-first, checkpoints are safe to load, runs resume where they stopped, and a distiller's
run ends with its test metrics side by side with its teacher's and with those of the same
student trained alone (:mod:`recbole_derrd.pipeline.student_alone`). ``recbole.quick_start`` is never
imported (it needs ray and knows RecBole's models only).

One run, in order (:func:`run_recbole_derrd`): the configuration (every key checked when it is
built), the checks before any work (:func:`checks_before_work`: a resume file, the teacher
file, ``auto`` weights that cannot be searched), the data and the teacher, prepared once
(:func:`~recbole_derrd.pipeline.training.prepare_inputs`, with the checks of the data before
a teacher is trained: :meth:`RunChecks.check_split`), the weight search when a weight is
``auto`` (:mod:`recbole_derrd.pipeline.loss_weights`), the training
(:func:`~recbole_derrd.pipeline.training.train`, the function every trial of the search also
calls), the test, and for a distiller the teacher's test and the student alone, then the final
table (:func:`~recbole_derrd.pipeline.report.log_final_table`). The run returns a
:class:`~recbole_derrd.pipeline.report.RunResult`.

Multi-process runs follow RecBole's ``run``: :func:`run` spawns ``nproc`` processes, each runs
:func:`run_recbole_derrd` with its ``local_rank``, and the first one's result is returned.
"""

import dataclasses
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
from recbole_derrd.pipeline.loss_weights import WeightChoice, check_automatic_weights, choose_automatic_weights
from recbole_derrd.pipeline.report import DistillationResult, RunResult, log_final_table
from recbole_derrd.pipeline.training import (  # noqa: F401 (evaluate_model: API)
    build_model,
    evaluate_model,
    is_distiller,
    parameter_count,
    prepare_data,
    prepare_distiller_teacher,
    prepare_inputs,
    train,
)
from recbole_derrd.data.popularity import PopularityGroupRecorder
from recbole_derrd.pipeline.student_alone import compare_student_alone
from recbole_derrd.pipeline.teacher_quality import validate_teacher
from recbole_derrd.teacher.loading import read_teacher_checkpoint
from recbole_derrd.pipeline.weight_search import refuse_automatic_weights


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


@dataclasses.dataclass
class RunChecks:
    """What the checks before any work found (:func:`checks_before_work`)."""

    #: The resume file to continue from (checked), or None.
    resume: str = None
    #: Its contents.
    resumed: dict = None
    #: The file of ``teacher_checkpoint``, read and checked, or None.
    teacher_file: dict = None
    #: The ``auto`` weights a resumed run takes from the run it continues.
    weights: WeightChoice = dataclasses.field(default_factory=WeightChoice)

    def check_split(self, split):
        """The checks of the data, once it is loaded and before a teacher is trained for it."""
        if self.resumed is not None:
            check_resume_split(self.resume, self.resumed, split.dataset, split.fingerprint)


def checks_before_work(config, resume=None):
    """Every check a run makes before it loads any data: its ``auto`` weights (a resumed run
    takes those of the run it continues; a multi-process run cannot search), the resume file,
    and the teacher file. The keys themselves were checked when ``config`` was built.

    Returns:
        RunChecks
    """
    weights = check_automatic_weights(config, resume)
    resumed = None
    if resume is not None:
        resume, resumed = read_resume_file(resume, config)
    teacher_file = None
    if is_distiller(config) and config["teacher_checkpoint"]:
        teacher_file = read_teacher_checkpoint(config)  # read once
    return RunChecks(resume, resumed, teacher_file, weights)


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
        RunResult: the run's figures (also readable as ``result["test_result"]``...).
    """
    config = Config(model, dataset, config_file_list, config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)
    checks = checks_before_work(config, resume)
    inputs = prepare_inputs(config, teacher_file=checks.teacher_file, before_teacher=checks.check_split,
                            log=True)
    # loss weights set to 'auto' are chosen on the validation split before the run trains
    weights = choose_automatic_weights(inputs, saved=saved, choice=checks.weights)
    training = train_run(inputs, weights, checks.resume, saved)
    result = test_run(inputs, training, weights, saved)
    if weights.journal is not None:
        # the run is tested and compared: its search is done (until now an interruption
        # found the trials in the journal)
        weights.journal.remove()
    if is_distributed(config):
        # every process done before any tears its connections down: a gloo peer that exits
        # while another still talks to it can abort ("terminate called without an active exception")
        dist.barrier()
        dist.destroy_process_group()
    if config["local_rank"] == 0 and queue is not None:
        queue.put(result)
    return result


def train_run(inputs, weights, resume, saved):
    """The run's training (:func:`~recbole_derrd.pipeline.training.train`): from its start, from
    ``resume``, or its weight search's chosen trial adopted."""
    config = inputs.config
    # a trial as long as the run is this run's training: adopted, not trained again (a run
    # that saves nothing tests its last epoch, as RecBole does, so it trains)
    adopt = weights.chosen_run if saved else None
    if weights.report is not None and resume is None:
        weights.report["chosen_trial_adopted"] = adopt is not None
    if adopt is not None:
        getLogger().info(set_color("weight search", "yellow") + ": the chosen trial was as long as "
                         "the run, with its patience: it is this run's training (adopted, not trained again)")
    weights.chosen_run = None  # its copy of the model and optimizer states, once taken
    return train(inputs, saved=saved, resume=resume, adopt=adopt, show_progress=config["show_progress"],
                 log_model=True, weight_search=weights.report)


def test_run(inputs, training, weights, saved):
    """The test of the trained model and, for a distiller, of its teacher and the student
    alone, with the final table; the run's :class:`RunResult`."""
    config, trainer, logger = inputs.config, training.trainer, getLogger()
    popularity = PopularityGroupRecorder(trainer, inputs.train_data)  # a no-op unless popularity_groups > 0
    with PerUserRecorder(trainer) as per_user_test, popularity:
        test_result = trainer.evaluate(
            inputs.test_data, load_best_model=saved, show_progress=config["show_progress"]
        )
    logger.info(
        "The running environment of this training is as follows:\n"
        + get_environment(config).draw()
    )
    logger.info(set_color("best valid ", "yellow") + f": {training.best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    return RunResult(
        best_valid_score=training.best_valid_score,
        valid_score_bigger=config["valid_metric_bigger"],
        best_valid_result=training.best_valid_result,
        test_result=test_result,
        test_per_user=per_user_test.values,
        test_popularity_result=popularity.report(),  # None unless popularity_groups > 0
        train_loss=dict(trainer.train_loss_dict),
        train_epoch_seconds=list(trainer.epoch_seconds),
        train_epoch_diagnostics=list(getattr(trainer, "epoch_diagnostics", [])),
        parameters=parameter_count(training.model),
        distillation=compare_distilled(inputs, training, test_result) if is_distiller(config) else None,
        checkpoint=trainer.saved_model_file if saved else None,
        resume_file=trainer.resume_file if saved else None,
        weight_search=weights.report,
    )


def compare_distilled(inputs, training, test_result):
    """The distilled student next to its teacher and, with ``compare_student_alone``, the same
    student trained alone (after the distilled student's test, in a preserved random state: the
    distilled run's results are the same with the comparison on or off); the final table."""
    config, model = inputs.config, training.model
    teacher_result = evaluate_model(config, inputs.teacher.model, inputs.train_data, inputs.test_data)
    alone = None
    if config["compare_student_alone"]:
        alone = compare_student_alone(inputs, model, training.best_valid_result)
    # a teacher worse than the student on validation is said in the table and warned about
    teacher_valid = validate_teacher(config, model, inputs.train_data, inputs.valid_data,
                                     training.best_valid_result, alone)
    log_final_table(model, test_result, teacher_result, alone, teacher_valid)
    return DistillationResult(
        teacher_test_result=teacher_result,
        teacher_valid=teacher_valid,
        student_parameters=parameter_count(model),
        teacher_parameters=parameter_count(inputs.teacher.model),
        teacher_checkpoint=inputs.teacher.path,
        loss_weights={key: config[key] for key in type(model).loss_weight_keys},
        alone=alone,
    )


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
        RunResult: the result of the (first) process, as :func:`run_recbole_derrd`'s.
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
    inputs = prepare_inputs(config)
    training = train(inputs, saved=saved, verbose=False)
    test_result = training.trainer.evaluate(inputs.test_data, load_best_model=saved)
    return {
        "model": config["model"],
        "best_valid_score": training.best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": training.best_valid_result,
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
    teacher = None
    if is_distiller(config):  # the teacher the model was trained with (its file, or cache)
        teacher = prepare_distiller_teacher(config, split, path=checkpoint.get("teacher_checkpoint"))
    model = build_model(config, train_data.dataset, teacher=teacher, split=split)
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    return config, model, dataset, train_data, valid_data, test_data
