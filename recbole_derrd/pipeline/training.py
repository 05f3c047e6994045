"""
recbole_derrd.pipeline.training
###############################
One run, written once: configuration -> seed -> data -> teacher -> seed -> model -> trainer.
Used by the run and objective functions (:mod:`recbole_derrd.quick_start`), by
:func:`~recbole_derrd.quick_start.load_data_and_model`, by the training of a model a
distillation run trains on demand (:func:`train_and_cache`, itself such a run: the on-demand
teacher, the student alone of :mod:`recbole_derrd.pipeline.student_alone`) and by
``run_scripts/bench_speed.py``.

A distiller's teacher is loaded (or trained, then loaded) once, here, before its student is
built, and handed to it: a model never trains a teacher. The training split's fingerprint and
interactions are computed once per run (:class:`~recbole_derrd.data.dataset.TrainingSplit`) and handed
on to the teacher's checks, the model and the trainer.
"""

import os
from logging import getLogger

from recbole.trainer import Trainer
from recbole.utils import init_seed, set_color

from recbole_derrd.files.checkpoint import read_checkpoint, save_checkpoint, to_plain, unique_path
from recbole_derrd.data.dataset import TrainingSplit, create_dataset, data_preparation, split_fingerprint
from recbole_derrd.pipeline.distributed import barrier, writes_files
from recbole_derrd.pipeline.random_state import preserved_random_state
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


def prepare_distiller_teacher(config, split, checkpoint=None):
    """A distiller's teacher for the training ``split``: the data is checked against the
    configuration first, then the teacher of ``teacher_checkpoint`` is loaded, or an on-demand
    teacher found in the cache or trained (:func:`prepare_teacher`), then loaded.

    Args:
        checkpoint (dict): the teacher file, if already read (:func:`recbole_derrd.teacher.loading.
            read_teacher_checkpoint`, before any data was loaded).

    Returns:
        recbole_derrd.teacher.loading.FrozenTeacher
    """
    config.model_class.data_requirements(config, split.dataset, split)
    if not config["teacher_checkpoint"]:
        prepare_teacher(config, split.dataset, split.fingerprint)
        checkpoint = None
    return load_teacher(config, split.dataset, checkpoint=checkpoint, data_fingerprint=split.fingerprint)


def build_model(config, train_dataset, teacher=None, split=None):
    """The model of ``config`` on the training data, on its device, seeded as RecBole's runs
    seed it (``seed + local_rank``); a distiller is handed its ``teacher``."""
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


def prepare_run(config, teacher_checkpoint=None, before_teacher=None, log_model=False, trainer_class=None):
    r"""Everything a run trains with: data, teacher (a distiller's), model and trainer.

    Args:
        config (Config): the run's configuration.
        teacher_checkpoint (dict): the teacher file, if already read.
        before_teacher (callable): called with the training split before a teacher is trained
            or loaded (e.g. to check a resume file against the split).
        log_model (bool): log the dataset and the model, as RecBole's run does.
        trainer_class (type): the trainer; None: the model's (:func:`build_trainer`).

    Returns:
        tuple: ``(dataset, train_data, valid_data, test_data, model, trainer)``.
    """
    logger = getLogger()
    dataset, train_data, valid_data, test_data = prepare_data(config)
    if log_model:
        logger.info(dataset)
    split = TrainingSplit(train_data.dataset)
    if before_teacher is not None:
        before_teacher(split)
    teacher = prepare_distiller_teacher(config, split, teacher_checkpoint) if is_distiller(config) else None
    model = build_model(config, train_data.dataset, teacher=teacher, split=split)
    if log_model:
        logger.info(model)
    trainer = trainer_class(config, model) if trainer_class else build_trainer(config, model)
    trainer.training_split = split
    return dataset, train_data, valid_data, test_data, model, trainer


def prepare_teacher(config, train_dataset, data_fingerprint=None):
    """Set ``config['teacher_checkpoint']``: the given checkpoint, a cached teacher for this
    data and these teacher settings, or a teacher trained now and cached
    (:func:`find_or_train`).

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
    config["teacher_checkpoint"] = path
    return path


def find_or_train(config, model_config, path, data_fingerprint, role, train):
    """Make sure the model of ``model_config`` that the run of ``config`` needs is cached at
    ``path``: reuse the file, or train it now with ``train(model_config, path,
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
                    train(model_config, path, data_fingerprint)
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
        trainer_class (type): the trainer (:func:`prepare_run`); None: the model's.
    """
    what = role_name(role)

    def same_split(split):
        if split.fingerprint != data_fingerprint:
            raise TeacherMismatchError(
                f"The {what}'s training split differs from the distillation run's although "
                "their data keys agree; check that the dataset files did not change during "
                "the run."
            )

    _, train_data, valid_data, test_data, _, trainer = prepare_run(
        model_config, before_teacher=same_split, trainer_class=trainer_class)
    trainer.saved_model_file = unique_path(path + ".training")
    # an interrupted model is trained again, not resumed: the next run removes its .training
    # file (remove_stale_training_files)
    trainer.resume_file = None
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=True, show_progress=model_config["show_progress"]
    )
    test_result = trainer.evaluate(test_data, load_best_model=True)
    getLogger().info(set_color(f"{what} test result", "yellow") + f": {dict(test_result)}")
    # single-process (only one process of a multi-process run trains the model)
    checkpoint = read_checkpoint(trainer.saved_model_file)
    checkpoint["derrd"] = {
        "role": role,
        "best_valid_score": to_plain(best_valid_score),
        "best_valid_result": to_plain(dict(best_valid_result or {})),
        "test_result": to_plain(dict(test_result)),
    }
    save_checkpoint(checkpoint, path)
    os.remove(trainer.saved_model_file)
