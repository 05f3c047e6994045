"""
recbole_derrd.teacher
#####################
The teacher: read from a checkpoint (``teacher_checkpoint``) or trained on demand, checked
against the student's data, and frozen.

- A teacher must have been trained on the student's data: same dataset, filters, ``eval_args``
  and ``seed`` (the keys :data:`MATCH_KEYS`), same user/item id counts and, for checkpoints of
  this plugin, the same training split (:func:`recbole_derrd.data.split_fingerprint`). A
  mismatch stops the run before training, naming what differs.
- Without ``teacher_checkpoint`` the teacher (``teacher_model``, ``teacher_embedding_size``,
  ``teacher_config``) is trained first and saved as
  ``<checkpoint_dir>/teacher-<Model>-<dataset>-<fingerprint>.pth``. The fingerprint hashes the
  teacher's configuration and the training split, so a later run with the same data and
  teacher settings reuses the file, and any change trains (and saves) a new one. The
  teacher's configuration is built without the student's command line, and checked as
  strictly as the student's when the student's configuration is built.
- Two runs that need the same on-demand teacher train it once: the second waits on a file
  lock next to the cache (``<cache>.lock``) and reuses the first one's file. A training that
  was interrupted leaves no stale file for ever: the next run removes it.
"""

import contextlib
import fcntl
import functools
import glob
import hashlib
import json
import os
from logging import getLogger

import yaml

from recbole.utils import ModelType, init_seed, set_color

from recbole_derrd.checkpoint import (
    plain_config,
    read_checkpoint,
    save_checkpoint,
    to_plain,
    unique_path,
)
from recbole_derrd.config import Config, config_from_plain, data_path_root
from recbole_derrd.data import create_dataset, data_preparation, split_fingerprint
from recbole_derrd.distributed import barrier, writes_files
from recbole_derrd.errors import UserError
from recbole_derrd.keys import RUNTIME_KEYS, SPLIT_KEYS, learned_from
from recbole_derrd.random_state import preserved_random_state
from recbole_derrd.utils import get_model, get_trainer

#: Keys that decide which data (and split) a model is trained on: teacher and student must agree.
MATCH_KEYS = SPLIT_KEYS

#: Models a teacher can be: user-item recommenders (RecBole's general and traditional ones).
TEACHER_TYPES = (ModelType.GENERAL, ModelType.TRADITIONAL)


def size_parameters(model_name, size):
    """The hyperparameters that give ``model_name`` the size ``size`` (``embedding_size``;
    NeuMF: both embedding tables and a [size, size / 2] MLP tower)."""
    if model_name == "NeuMF":
        return {
            "mf_embedding_size": size,
            "mlp_embedding_size": size,
            "mlp_hidden_size": [size, max(1, size // 2)],
        }
    return {"embedding_size": size}


class TeacherError(UserError, ValueError):
    """The teacher cannot be used for this student."""


class TeacherMismatchError(TeacherError):
    """The teacher was trained on other data, another split or other ids than the student."""


def mismatched_keys(student_config, teacher_plain):
    """The :data:`MATCH_KEYS` on which two configurations disagree, as ``{key: (student,
    teacher)}``."""
    differing = {}
    for key in MATCH_KEYS:
        student_value = to_plain(student_config[key])
        teacher_value = to_plain(teacher_plain.get(key))
        if student_value != teacher_value:
            differing[key] = (student_value, teacher_value)
    return differing


def _describe(differing):
    return "; ".join(f"{key}: student {s!r}, teacher {t!r}" for key, (s, t) in differing.items())


def read_teacher_checkpoint(config):
    """Read and check ``config['teacher_checkpoint']`` before any data is loaded.

    Returns:
        dict: the checkpoint (config as a plain dict).

    Raises:
        CheckpointError: missing, unreadable, or foreign without ``trust_checkpoint``.
        TeacherError: not a general recommender, or a distiller of this plugin.
        TeacherMismatchError: trained on other data or another split.
    """
    path = config["teacher_checkpoint"]
    checkpoint = read_checkpoint(path, trust=bool(config["trust_checkpoint"]))
    teacher_plain = checkpoint.get("config") or {}
    name = teacher_plain.get("model") or checkpoint.get("model")
    model_class = get_model(name)
    if getattr(model_class, "is_distiller", False):
        raise TeacherError(
            f"'{path}' holds a {name} student; export its backbone first to use it as a teacher."
        )
    if model_class.type not in TEACHER_TYPES:
        raise TeacherError(
            f"'{path}' holds {name}, a {model_class.type.name.lower()} recommender; the teacher "
            "must be a general recommender (user-item collaborative filtering)."
        )
    differing = mismatched_keys(config, teacher_plain)
    if differing:
        raise TeacherMismatchError(
            f"Teacher '{path}' was trained on other data or another split than this run "
            f"({_describe(differing)}). Retrain the teacher with the student's dataset, "
            "filters, eval_args and seed, or leave teacher_checkpoint unset to train one."
        )
    return checkpoint


def teacher_overrides(config):
    """``teacher_config`` as a dict: given inline, or as the path of a YAML file."""
    overrides = config["teacher_config"]
    if overrides is None:
        return {}
    source = "teacher_config"
    if isinstance(overrides, str):
        source = f"teacher_config file '{overrides}'"
        with open(overrides, encoding="utf-8") as handle:
            overrides = yaml.safe_load(handle) or {}
    if not isinstance(overrides, dict):
        raise TeacherError(f"{source} must hold a mapping of keys to values, got {overrides!r}")
    return dict(overrides)


#: Evaluation keys an on-demand teacher shares with its student (so that its early stopping
#: scores the same candidates), without being required of a teacher given by file.
SHARED_EVALUATION_KEYS = ["fixed_eval_candidates"]


def teacher_config_dict(config):
    """Parameters of an on-demand teacher: the student's data, evaluation and runtime keys
    (never its hyperparameters), the teacher's size, then ``teacher_config``."""
    shared = MATCH_KEYS + SHARED_EVALUATION_KEYS + RUNTIME_KEYS
    parameters = {key: config[key] for key in shared if key in config}
    parameters.pop("dataset")
    parameters["data_path"] = data_path_root(config)
    parameters.update(size_parameters(config["teacher_model"], config["teacher_embedding_size"]))
    parameters.update(teacher_overrides(config))
    return parameters


def build_teacher_config(config):
    """The on-demand teacher's own :class:`Config` (the command line is not parsed)."""
    return Config(
        model=config["teacher_model"],
        dataset=config["dataset"],
        config_dict=teacher_config_dict(config),
        parse_command_line=False,
    )


def teacher_fingerprint(teacher_config, data_fingerprint):
    """Hash of what a teacher learns from: its configuration (runtime keys aside) and the
    training split."""
    payload = json.dumps(
        {"config": learned_from(plain_config(teacher_config)), "split": data_fingerprint},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]


def teacher_cache_path(config, teacher_config, data_fingerprint):
    name = f"teacher-{teacher_config['model']}-{config['dataset']}-"
    name += teacher_fingerprint(teacher_config, data_fingerprint) + ".pth"
    return os.path.join(config["checkpoint_dir"], name)


def prepare_teacher(config, train_dataset):
    """Set ``config['teacher_checkpoint']``: the given checkpoint, a cached teacher for this
    data and these teacher settings, or a teacher trained now and cached.

    The global random state is left as it was, so the student's run is the same whether the
    teacher was trained or read from the cache.

    In a multi-process run the process that writes files trains the teacher (in a
    single-process configuration of its own) while the others wait for it at a barrier, then
    every process reads the same file.

    Returns:
        str: the teacher checkpoint path.
    """
    if config["teacher_checkpoint"]:
        return config["teacher_checkpoint"]
    logger = getLogger()
    data_fingerprint = split_fingerprint(train_dataset)
    teacher_config = build_teacher_config(config)
    path = teacher_cache_path(config, teacher_config, data_fingerprint)
    if os.path.isfile(path):
        logger.info(set_color("Reusing cached teacher", "green") + f": {path}")
    elif writes_files(config):
        with teacher_lock(path):  # another run training this teacher finishes first
            if os.path.isfile(path):
                logger.info(set_color("Reusing the teacher just trained", "green") + f": {path}")
            else:
                remove_stale_training_files(path)
                logger.info(
                    set_color("Training the teacher", "green")
                    + f" {teacher_config['model']} on {config['dataset']} (no cached teacher at "
                    f"{path})"
                )
                with preserved_random_state():
                    train_teacher(teacher_config, path, data_fingerprint)
    barrier(config)
    if not os.path.isfile(path):
        raise TeacherError(
            f"The teacher trained by the first process of this machine is missing at {path}."
        )
    config["teacher_checkpoint"] = path
    return path


@contextlib.contextmanager
def teacher_lock(path):
    """Hold an exclusive lock on ``<path>.lock`` (``fcntl.flock``, next to the cached
    teacher): two runs that need the same on-demand teacher train it once, the second waits
    for the first and reuses its file. The lock is released when the process ends, however
    it ends, so a killed run never blocks the next one; the empty lock file stays."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            getLogger().info(
                set_color("Waiting", "yellow")
                + f" for another run that is training this teacher ({path}.lock)"
            )
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def training_files(path):
    """The files a teacher being trained for ``path`` writes (``<path>.training``, or
    ``<path>-N.training``), and the temporary files of their writes."""
    folder, name = os.path.split(os.path.abspath(path))
    patterns = [glob.escape(path) + "*.training", os.path.join(glob.escape(folder), f".{glob.escape(name)}*.tmp")]
    return sorted({file for pattern in patterns for file in glob.glob(pattern)})


def remove_stale_training_files(path):
    """Remove what an interrupted training of the teacher for ``path`` left behind; called
    with :func:`teacher_lock` held, so no other run is writing these files."""
    for stale in training_files(path):
        getLogger().warning(f"Removing {stale}, left by an interrupted training of this teacher")
        os.remove(stale)


def train_teacher(teacher_config, path, data_fingerprint):
    """Train ``teacher_config['model']`` on the student's split and save it at ``path``, with
    its data fingerprint and test metrics."""
    init_seed(teacher_config["seed"], teacher_config["reproducibility"])
    dataset = create_dataset(teacher_config)
    train_data, valid_data, test_data = data_preparation(teacher_config, dataset)
    if split_fingerprint(train_data.dataset) != data_fingerprint:
        raise TeacherMismatchError(
            "The teacher's training split differs from the student's although their data keys "
            "agree; check that the dataset files did not change during the run."
        )
    init_seed(teacher_config["seed"] + teacher_config["local_rank"], teacher_config["reproducibility"])
    model_class = get_model(teacher_config["model"])
    model = model_class(teacher_config, train_data.dataset).to(teacher_config["device"])
    trainer = get_trainer(teacher_config["MODEL_TYPE"], teacher_config["model"])(
        teacher_config, model
    )
    trainer.saved_model_file = unique_path(path + ".training")
    # an interrupted on-demand teacher is trained again, not resumed: the next run removes
    # its .training file (remove_stale_training_files)
    trainer.resume_file = None
    trainer.fit(train_data, valid_data, saved=True, show_progress=teacher_config["show_progress"])
    test_result = trainer.evaluate(test_data, load_best_model=True)
    getLogger().info(set_color("teacher test result", "yellow") + f": {dict(test_result)}")
    # single-process (only one process of a multi-process run trains the teacher)
    checkpoint = read_checkpoint(trainer.saved_model_file)
    checkpoint["derrd"] = {"role": "teacher", "test_result": to_plain(dict(test_result))}
    save_checkpoint(checkpoint, path)
    os.remove(trainer.saved_model_file)


def file_digest(path, block_size=1 << 22):
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(block_size), b""):
            digest.update(block)
    return digest.hexdigest()


class FrozenTeacher:
    """A loaded teacher: the RecBole model (eval mode, no gradients) and where it came from.

    Not an ``nn.Module`` attribute of the student on purpose: its weights never enter the
    student's ``state_dict`` or optimizer.
    """

    def __init__(self, model, path, checkpoint_config):
        self.model = model
        self.path = path
        self.config = checkpoint_config

    @property
    def name(self):
        return type(self.model).__name__

    @property
    def parameter_count(self):
        return sum(parameter.numel() for parameter in self.model.parameters())

    @functools.cached_property
    def digest(self):
        """Hash of the teacher file: what its cached top-N is keyed by."""
        return file_digest(self.path)


def load_teacher(config, dataset):
    """Build the teacher of ``config['teacher_checkpoint']`` on the student's training
    ``dataset`` and check that it fits it (ids, split).

    Returns:
        FrozenTeacher
    """
    checkpoint = read_teacher_checkpoint(config)
    path = config["teacher_checkpoint"]
    teacher_plain = checkpoint["config"]
    teacher_split = checkpoint.get("split_fingerprint")
    if teacher_split is not None and teacher_split != split_fingerprint(dataset):
        raise TeacherMismatchError(
            f"Teacher '{path}' was trained on another training split than this run's (same "
            "configuration keys, different interactions: were the dataset files changed?). "
            "Retrain the teacher on the current data."
        )
    runtime = {key: config[key] for key in RUNTIME_KEYS if key in config}
    runtime["data_path"] = data_path_root(config)
    teacher_config = config_from_plain(teacher_plain, dataset=config["dataset"], overrides=runtime)
    model = get_model(teacher_plain["model"])(teacher_config, dataset)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise TeacherMismatchError(
            f"Teacher '{path}' does not fit this run's data ({dataset.user_num} user ids, "
            f"{dataset.item_num} item ids, padding included): {error}"
        ) from None
    model.load_other_parameter(checkpoint.get("other_parameter"))
    model = model.to(config["device"]).eval()
    model.requires_grad_(False)
    return FrozenTeacher(model, path, teacher_plain)
