"""
recbole_derrd.pipeline.training
###############################
One training, written once. A run prepares what it trains with once (:func:`prepare_inputs`:
the data, the training split, a distiller's teacher and the random state a training starts
from, held by a :class:`RunInputs`) and trains with :func:`train`, which every training of the
plugin calls: the run's own (:func:`recbole_derrd.quick_start.run_recbole_derrd`), every trial
of its weight search (:mod:`recbole_derrd.pipeline.weight_search`), the tuner's objective
(:func:`recbole_derrd.quick_start.objective_function`) and the models a distillation run
trains on demand (:func:`train_and_cache`: the on-demand teacher, the student alone of
:mod:`recbole_derrd.pipeline.student_alone`).

A distiller's teacher is loaded (or trained, then loaded) once, here, as one
:class:`~recbole_derrd.teacher.loading.FrozenTeacher` handed to every model built from the same
inputs: a model never loads or trains a teacher, and the configuration's ``teacher_checkpoint``
is never rewritten. The training split's fingerprint and interactions are computed once per run
(:class:`~recbole_derrd.data.dataset.TrainingSplit`) and handed on to the teacher's checks, the
model and the trainer.
"""

import contextlib
import dataclasses
import os
import time
from logging import getLogger

from recbole.trainer import Trainer
from recbole.utils import init_seed, set_color

from recbole_derrd.files.checkpoint import read_checkpoint, resume_path, save_checkpoint, to_plain, unique_path
from recbole_derrd.data.dataset import TrainingSplit, create_dataset, data_preparation, split_fingerprint
from recbole_derrd.pipeline.distributed import barrier, writes_files
from recbole_derrd.pipeline.random_state import preserved_random_state, run_random_state, set_run_random_state
from recbole_derrd.teacher.loading import TeacherError, TeacherMismatchError, build_teacher_config, load_teacher
from recbole_derrd.teacher.cache import remove_stale_training_files, role_name, teacher_cache_path, training_lock
from recbole_derrd.utils import get_trainer, safe_trainer_class


def parameter_count(model):
    """Parameters of a model as deployed: a distiller's student backbone alone, any other
    model (a teacher, a baseline) whole."""
    deployed = model.student if getattr(model, "is_distiller", False) else model
    return sum(parameter.numel() for parameter in deployed.parameters())


def is_distiller(config):
    return getattr(config.model_class, "is_distiller", False)


def prepare_data(config):
    """Seed, then RecBole's dataset and splits (``config['seed']`` decides the split).

    Returns:
        tuple: ``(dataset, train_data, valid_data, test_data)``.
    """
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    return dataset, train_data, valid_data, test_data


@dataclasses.dataclass
class RunInputs:
    """What every training of one run shares, prepared once (:func:`prepare_inputs`)."""

    config: object
    dataset: object
    train_data: object
    valid_data: object
    test_data: object
    #: The training split's fingerprint and interactions.
    split: TrainingSplit
    #: A distiller's :class:`~recbole_derrd.teacher.loading.FrozenTeacher` (None for a
    #: RecBole model).
    teacher: object
    #: The random state every training starts from (:func:`run_random_state`).
    start_state: dict
    #: Seconds the preparation took (data and teacher).
    seconds: float = 0.0


def prepare_inputs(config, teacher_file=None, before_teacher=None, log=False):
    """Data, training split and a distiller's teacher for ``config``, once.

    Args:
        teacher_file (dict): the file of ``teacher_checkpoint``, if already read
            (:func:`~recbole_derrd.teacher.loading.read_teacher_checkpoint`, before any data).
        before_teacher (callable): the checks of the data, called with the training split
            before a teacher is trained or loaded (e.g. a resume file's split).
        log (bool): log the dataset, as RecBole's run does.
    """
    start = time.perf_counter()
    dataset, train_data, valid_data, test_data = prepare_data(config)
    if log:
        getLogger().info(dataset)
    split = TrainingSplit(train_data.dataset)
    if before_teacher is not None:
        before_teacher(split)
    teacher = prepare_distiller_teacher(config, split, teacher_file) if is_distiller(config) else None
    start_state = run_random_state(train_data)
    return RunInputs(config, dataset, train_data, valid_data, test_data, split, teacher, start_state,
                     time.perf_counter() - start)


def prepare_distiller_teacher(config, split, checkpoint=None, path=None):
    """A distiller's teacher for the training ``split``: the data is checked against the
    configuration first, then the teacher of ``path`` (default: ``teacher_checkpoint``) is
    loaded, or an on-demand teacher found in the cache or trained (:func:`prepare_teacher`),
    then loaded.

    Args:
        checkpoint (dict): the teacher file, if already read (:func:`recbole_derrd.teacher.
            loading.read_teacher_checkpoint`, before any data was loaded).

    Returns:
        recbole_derrd.teacher.loading.FrozenTeacher
    """
    config.model_class.data_requirements(config, split.dataset, split)
    path = path or config["teacher_checkpoint"]
    if not path:
        path = prepare_teacher(config, split.dataset, split.fingerprint)
        checkpoint = None
    return load_teacher(config, split.dataset, path=path, checkpoint=checkpoint,
                        data_fingerprint=split.fingerprint)


def build_model(config, train_dataset, teacher=None, split=None):
    """The model of ``config`` on the training data, on its device, seeded as RecBole's runs
    seed it (``seed + local_rank``); a distiller is handed its ``teacher`` (by default the one
    ``teacher_checkpoint`` names, loaded before the seed)."""
    if is_distiller(config) and teacher is None and config["teacher_checkpoint"]:
        teacher = load_teacher(config, train_dataset, data_fingerprint=getattr(split, "fingerprint", None))
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model_class = config.model_class
    if is_distiller(config):
        model = model_class(config, train_dataset, teacher=teacher, split=split)
    else:
        model = model_class(config, train_dataset)
    return model.to(config["device"])


def evaluate_model(config, model, train_data, eval_data, show_progress=False):
    """Evaluate any RecBole model with ``config``'s evaluator settings (no checkpoint read)."""
    trainer = safe_trainer_class(Trainer)(config, model)
    trainer.eval_collector.data_collect(train_data)
    return trainer.evaluate(eval_data, load_best_model=False, show_progress=show_progress)


def build_trainer(config, model):
    """The plugin's trainer for ``config['model']`` (safe checkpoints, resume files)."""
    return get_trainer(config["MODEL_TYPE"], config["model"])(config, model)


@contextlib.contextmanager
def config_values(config, values):
    """``config`` with ``values`` set for the block, restored afterwards."""
    saved = {key: config[key] for key in values}
    for key, value in values.items():
        config[key] = value
    try:
        yield config
    finally:
        for key, value in saved.items():
            config[key] = value


def model_and_trainer(inputs, log_model=False, trainer_class=None):
    """A fresh model of ``inputs.config`` (its teacher handed in) and its trainer
    (``trainer_class``, or the model's own: :func:`build_trainer`)."""
    config = inputs.config
    model = build_model(config, inputs.train_data.dataset, teacher=inputs.teacher, split=inputs.split)
    if log_model:
        getLogger().info(model)
    trainer = trainer_class(config, model) if trainer_class else build_trainer(config, model)
    trainer.training_split = inputs.split
    return model, trainer


@dataclasses.dataclass
class Training:
    """One finished training (:func:`train`)."""

    model: object
    trainer: object
    best_valid_score: float
    best_valid_result: dict
    #: Training seconds of the epochs before a resume (0 for a training that did not resume).
    resumed_seconds: float = 0.0


def train(inputs, settings=None, saved=True, resume=None, adopt=None, model_file=None,
          resume_file=True, keep_in_memory=False, verbose=True, show_progress=False, log_model=False,
          weight_search=None, trainer_class=None):
    r"""Train a fresh model of ``inputs.config`` with ``settings`` set in the configuration for
    the training, from the run's start state: the one training function of the plugin.

    Args:
        settings (dict): configuration values of this training (a trial's weights...).
        saved (bool): save the best model (RecBole's ``saved``).
        resume (str): a resume file (already checked) to continue from.
        adopt (dict): a finished training of these exact settings
            (:meth:`~recbole_derrd.trainer.SafeCheckpointMixin.trained_run`) taken instead of
            training again (:meth:`~recbole_derrd.trainer.SafeCheckpointMixin.adopt_trial`).
        model_file (str): where the best model is written (default: the trainer's own name).
        resume_file (bool): write a resume file beside it.
        keep_in_memory (bool): keep the best epoch's state in memory instead of a file.
        log_model (bool): log the model, as RecBole's run does.
        weight_search (dict): the report of the search that chose the weights, saved with the
            checkpoints.
        trainer_class (type): the trainer; None: the model's (:func:`build_trainer`).

    Returns:
        Training
    """
    config = inputs.config
    with config_values(config, settings or {}):
        set_run_random_state(inputs.start_state, inputs.train_data)
        model, trainer = model_and_trainer(inputs, log_model, trainer_class)
        trainer.keeps_best_in_memory = keep_in_memory
        if model_file is not None:
            trainer.saved_model_file = model_file
        trainer.resume_file = resume_path(trainer.saved_model_file) if resume_file else None
        if resume is not None:
            trainer.resume_checkpoint(resume)
        trainer.weight_search = weight_search
        resumed_seconds = sum(trainer.epoch_seconds)
        if adopt is not None:
            score, result = trainer.adopt_trial(adopt, inputs.train_data)
        else:
            score, result = trainer.fit(inputs.train_data, inputs.valid_data, verbose=verbose,
                                        saved=saved, show_progress=show_progress)
    return Training(model, trainer, score, result, resumed_seconds)


def prepare_run(config, before_teacher=None, log_model=False):
    r"""Everything a run trains with, untrained: data, teacher (a distiller's), model and
    trainer (for scripts and tests that drive the trainer themselves).

    Returns:
        tuple: ``(dataset, train_data, valid_data, test_data, model, trainer)``.
    """
    inputs = prepare_inputs(config, before_teacher=before_teacher, log=log_model)
    model, trainer = model_and_trainer(inputs, log_model)
    return inputs.dataset, inputs.train_data, inputs.valid_data, inputs.test_data, model, trainer


def prepare_teacher(config, train_dataset, data_fingerprint=None):
    """The path of the teacher of ``config``: ``teacher_checkpoint``, or a cached on-demand
    teacher for this data and these teacher settings, or one trained now and cached
    (:func:`find_or_train`). The configuration is left as it is.

    Args:
        data_fingerprint (str): ``split_fingerprint(train_dataset)``, if already computed.

    Returns:
        str: the teacher checkpoint path.
    """
    if config["teacher_checkpoint"]:
        return config["teacher_checkpoint"]
    if data_fingerprint is None:
        data_fingerprint = split_fingerprint(train_dataset)
    teacher_config = build_teacher_config(config)
    path = teacher_cache_path(config, teacher_config, data_fingerprint)
    # train_teacher looked up now, not bound at import: tests replace it
    find_or_train(config, teacher_config, path, data_fingerprint, "teacher", train_teacher)
    if not os.path.isfile(path):
        raise TeacherError(
            f"The teacher trained by the first process of this machine is missing at {path}."
        )
    return path


def find_or_train(config, model_config, path, data_fingerprint, role, train_model):
    """Make sure the model of ``model_config`` that the run of ``config`` needs is cached at
    ``path``: reuse the file, or train it now with ``train_model(model_config, path,
    data_fingerprint)`` (e.g. :func:`train_and_cache`) under the cache's lock, so that two runs
    that need it train it once.

    The global random state is left as it was, so the run is the same whether the model was
    trained or read from the cache.

    In a multi-process run the process that writes files trains the model (in a
    single-process configuration of its own) while the others wait for it at a barrier; the
    caller checks that the file is there.

    Args:
        role (str): ``teacher`` or ``student-alone``, for the log.
    """
    logger = getLogger()
    what = role_name(role)
    if os.path.isfile(path):
        logger.info(set_color(f"Reusing cached {what}", "green") + f": {path}")
    elif writes_files(config):
        with training_lock(path, role):  # another run training this model finishes first
            if os.path.isfile(path):
                logger.info(set_color(f"Reusing the {what} just trained", "green") + f": {path}")
            else:
                remove_stale_training_files(path, role)
                logger.info(
                    set_color(f"Training the {what}", "green")
                    + f" {model_config['model']} on {config['dataset']} (no cached {what} at "
                    f"{path})"
                )
                with preserved_random_state():
                    train_model(model_config, path, data_fingerprint)
    barrier(config)


def train_teacher(teacher_config, path, data_fingerprint):
    """Train an on-demand teacher and cache it at ``path`` (:func:`train_and_cache`)."""
    train_and_cache(teacher_config, path, data_fingerprint, "teacher")


def train_and_cache(model_config, path, data_fingerprint, role, trainer_class=None):
    """Train ``model_config['model']`` on the run's split and save it at ``path``, with its
    data fingerprint, its role and its best validation and test results.

    Args:
        data_fingerprint (str): the fingerprint of the training split of the run that needs
            the model: training on another split is refused.
        role (str): ``teacher`` or ``student-alone``.
        trainer_class (type): the trainer (:func:`train`); None: the model's.
    """
    what = role_name(role)

    def same_split(split):
        if split.fingerprint != data_fingerprint:
            raise TeacherMismatchError(
                f"The {what}'s training split differs from the distillation run's although "
                "their data keys agree; check that the dataset files did not change during "
                "the run."
            )

    inputs = prepare_inputs(model_config, before_teacher=same_split)
    # an interrupted model is trained again, not resumed: the next run removes its .training
    # file (remove_stale_training_files)
    training = train(inputs, model_file=unique_path(path + ".training"), resume_file=False,
                     show_progress=model_config["show_progress"], trainer_class=trainer_class)
    trainer = training.trainer
    test_result = trainer.evaluate(inputs.test_data, load_best_model=True)
    getLogger().info(set_color(f"{what} test result", "yellow") + f": {dict(test_result)}")
    # single-process (only one process of a multi-process run trains the model)
    checkpoint = read_checkpoint(trainer.saved_model_file)
    checkpoint["derrd"] = {
        "role": role,
        "best_valid_score": to_plain(training.best_valid_score),
        "best_valid_result": to_plain(dict(training.best_valid_result or {})),
        "test_result": to_plain(dict(test_result)),
    }
    save_checkpoint(checkpoint, path)
    os.remove(trainer.saved_model_file)
