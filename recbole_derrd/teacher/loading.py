"""
recbole_derrd.teacher.loading
#############################
The teacher: read from a checkpoint (the user's ``teacher_checkpoint``, or the file of a
teacher the run trained on demand), checked against the student's data, and frozen as one
:class:`FrozenTeacher` object; and the configuration of a teacher trained on demand (the
training itself: :mod:`recbole_derrd.pipeline.training`, used by a run, never by a model).

A run loads its teacher once (:func:`load_teacher`, the one loading path) and hands the object
to its model, to every trial of its weight search and to its final comparison; the
configuration's ``teacher_checkpoint`` stays what the user gave (None for an on-demand
teacher: :attr:`FrozenTeacher.path` says which file it is).

- A teacher must have been trained on the student's data: same dataset, filters, ``eval_args``
  and ``seed`` (the keys :data:`MATCH_KEYS`), same user/item id counts and, for checkpoints of
  this plugin, the same training split (:func:`recbole_derrd.data.dataset.split_fingerprint`). A
  mismatch stops the run before training, naming what differs.
- An on-demand teacher's configuration (``teacher_model``, ``teacher_embedding_size``,
  ``teacher_config``) is built without the student's command line, and checked as strictly as
  the student's when the student's configuration is built.
"""

import functools
import hashlib

import yaml

from recbole.utils import ModelType

from recbole_derrd.files.checkpoint import read_checkpoint, to_plain
from recbole_derrd.data.dataset import split_fingerprint
from recbole_derrd.errors import UserError
from recbole_derrd.settings.keys import RUNTIME_KEYS, SPLIT_KEYS, data_path_root, rebuilt_parameters
from recbole_derrd.settings.registry import is_distiller_name, recbole_model, registered_backbone

#: Keys that decide which data (and split) a model is trained on: teacher and student must agree.
MATCH_KEYS = SPLIT_KEYS

#: Models a teacher can be: user-item recommenders (RecBole's general and traditional ones).
TEACHER_TYPES = (ModelType.GENERAL, ModelType.TRADITIONAL)


def size_parameters(model_name, size):
    """The hyperparameters that give ``model_name`` the size ``size``: its backbone adapter's
    (:meth:`~recbole_derrd.model.backbones.Backbone.size_parameters`), ``embedding_size`` for a
    model without one."""
    adapter = registered_backbone(model_name)
    return adapter.size_parameters(size) if adapter is not None else {"embedding_size": size}


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


def read_teacher_checkpoint(config, path=None):
    """Read and check the teacher file ``path`` (default: ``config['teacher_checkpoint']``)
    before any data is loaded.

    Returns:
        dict: the checkpoint (config as a plain dict).

    Raises:
        CheckpointError: missing, unreadable, or foreign without ``trust_checkpoint``.
        TeacherError: not a general recommender, or a distiller of this plugin.
        TeacherMismatchError: trained on other data or another split.
    """
    path = path or config["teacher_checkpoint"]
    checkpoint = read_checkpoint(path, trust=bool(config["trust_checkpoint"]))
    teacher_plain = checkpoint.get("config") or {}
    name = teacher_plain.get("model") or checkpoint.get("model")
    if is_distiller_name(name):
        raise TeacherError(
            f"'{path}' holds a {name} student; export its backbone first to use it as a teacher."
        )
    model_class = recbole_model(name)
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
    """The on-demand teacher's own configuration, built by the student's configurator
    (:class:`recbole_derrd.config.Config`; the command line is not parsed)."""
    return type(config)(
        model=config["teacher_model"],
        dataset=config["dataset"],
        config_dict=teacher_config_dict(config),
        parse_command_line=False,
    )


def file_digest(path, block_size=1 << 22):
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(block_size), b""):
            digest.update(block)
    return digest.hexdigest()


class FrozenTeacher:
    """A loaded teacher: the RecBole model (eval mode, no gradients) and where it came from.
    Made once per run (:func:`load_teacher`) and shared by every model the run builds.

    Not an ``nn.Module`` attribute of the student on purpose: its weights never enter the
    student's ``state_dict`` or optimizer.
    """

    def __init__(self, model, path, checkpoint_config, model_config=None):
        self.model = model
        self.path = path
        self.config = checkpoint_config
        #: The configuration the model was built with.
        self.model_config = model_config
        #: (N, training split fingerprint) -> the teacher's top-N items, for every
        #: model built with this teacher (:meth:`~recbole_derrd.model.distiller.Distiller.
        #: compute_teacher_topn`).
        self.topn_by_split = {}

    def replay_construction(self, dataset):
        """Build (and drop) a fresh model of the teacher's class, for its random draws alone.

        A distiller calls this after building its student, before its distillation modules:
        where distillers built their teacher themselves before the run loaded it once. The
        draws are kept so that the experts' initialisation and every later draw, and so every
        result committed with those versions, stay the same (docs/architecture.md).
        """
        type(self.model)(self.model_config, dataset)

    @property
    def name(self):
        return type(self.model).__name__

    @functools.cached_property
    def digest(self):
        """Hash of the teacher file: what its cached top-N is keyed by."""
        return file_digest(self.path)


def load_teacher(config, dataset, path=None, checkpoint=None, data_fingerprint=None):
    """Build the teacher of the file ``path`` (default: ``config['teacher_checkpoint']``) on the
    student's training ``dataset``, check that it fits it (ids, split), and freeze it.

    Args:
        checkpoint (dict): the teacher file, if already read and checked by
            :func:`read_teacher_checkpoint` (a run reads it once, before loading any data).
        data_fingerprint (str): ``split_fingerprint(dataset)``, if already computed.

    Returns:
        FrozenTeacher
    """
    path = path or config["teacher_checkpoint"]
    if checkpoint is None:
        checkpoint = read_teacher_checkpoint(config, path)
    if data_fingerprint is None:
        data_fingerprint = split_fingerprint(dataset)
    teacher_plain = checkpoint["config"]
    teacher_split = checkpoint.get("split_fingerprint")
    if teacher_split is not None and teacher_split != data_fingerprint:
        raise TeacherMismatchError(
            f"Teacher '{path}' was trained on another training split than this run's (same "
            "configuration keys, different interactions: were the dataset files changed?). "
            "Retrain the teacher on the current data."
        )
    runtime = {key: config[key] for key in RUNTIME_KEYS if key in config}
    runtime["data_path"] = data_path_root(config)
    # the teacher's configuration, rebuilt by the student's configurator
    teacher_config = type(config)(
        model=teacher_plain["model"],
        dataset=config["dataset"],
        config_dict=rebuilt_parameters(teacher_plain, runtime),
        parse_command_line=False,
    )
    model = recbole_model(teacher_plain["model"])(teacher_config, dataset)
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
    return FrozenTeacher(model, path, teacher_plain, teacher_config)
