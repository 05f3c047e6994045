"""
recbole_derrd.files.checkpoint
##############################
Checkpoints that load with ``torch.load(weights_only=True)``.

RecBole pickles its ``Config`` object (which holds the model class) into every checkpoint, so
torch >= 2.6 refuses to load them by default, and loading them with ``weights_only=False``
runs arbitrary pickled code. This plugin writes plain dictionaries of tensors and primitives
instead, and unpickles a foreign RecBole checkpoint only when the user asked for it
(``trust_checkpoint=True``).

Besides the best model (written when validation improves, as RecBole does), a run writes a
**resume file** at the start of every epoch, ``<best model stem>.resume.pth``: the model,
optimizer, early-stopping state and random generators at that point, so that a run stopped
during an epoch continues from that epoch's start exactly as if it had not stopped
(:meth:`recbole_derrd.trainer.SafeCheckpointMixin.resume_checkpoint`). This module holds
the files' layout, reading and writing; the trainer behaviour that uses them is in
:mod:`recbole_derrd.trainer`.
"""

import enum
import os
import pickle

import numpy as np
import torch

from recbole_derrd.data.dataset import split_fingerprint
from recbole_derrd.files.writing import (  # noqa: F401 (re-exported: the files' API)
    MAX_NAME_TRIES,
    FileWriteError,
    NoFreeNameError,
    atomic_write,
    candidate_names,
    no_free_name,
    unique_path,
    write_new_file,
)
from recbole_derrd.errors import CheckpointError, UntrustedCheckpointError
from recbole_derrd.settings.keys import SPLIT_KEYS, learned_from
from recbole_derrd.settings.registry import parameter_keys

#: Written into every checkpoint of this plugin, so that a reader knows the layout.
CHECKPOINT_FORMAT = "recbole-derrd/1"

#: ``kind`` of a resume file (other checkpoints of the plugin have no ``kind``).
RESUME_KIND = "resume"

#: Keys that decide an on-demand teacher: a resume with other values would train (and
#: distil from) another teacher, and is refused before that teacher is trained.
ON_DEMAND_TEACHER_KEYS = ["teacher_model", "teacher_embedding_size", "teacher_config"]


def to_plain(value):
    """``value`` as primitives, lists, dicts and tensors only (what ``weights_only`` loads).

    Enums become their names, devices and other objects their string form.
    """
    if isinstance(value, np.generic):  # before float: np.float64 subclasses float
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, dict):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    return str(value)


def plain_config(config):
    """The final configuration of a RecBole/plugin ``Config`` (or a plain dict) as primitives."""
    final = getattr(config, "final_config_dict", config)
    return to_plain(dict(final))


def tensor_other_parameters(model):
    """The model's ``other_parameter()`` entries that are tensors (or None).

    Other entries (EASE's and ItemKNN's NumPy/SciPy matrices) cannot be stored without
    pickling; those models recompute them from the training data when they are built.
    """
    return {
        name: value
        for name, value in (model.other_parameter() or {}).items()
        if value is None or isinstance(value, torch.Tensor)
    }


def resume_path(model_file):
    """The resume file written beside a best-model file: ``<stem>.resume<ext>``."""
    stem, extension = os.path.splitext(model_file)
    return f"{stem}.{RESUME_KIND}{extension}"


def best_model_path(resume_file):
    """The best-model file of a resume file, derived from the resume file's own name
    (``<stem>.resume<ext>`` -> ``<stem><ext>``, in the same folder): the inverse of
    :func:`resume_path`.

    Never read from the file's contents: a name or path stored in a file is untrusted, and a
    resumed run writes to this file.

    Raises:
        CheckpointError: the name does not end in ``.resume<ext>``.
    """
    stem, extension = os.path.splitext(resume_file)
    suffix = f".{RESUME_KIND}"
    if not stem.endswith(suffix) or os.path.basename(stem) == suffix:
        raise CheckpointError(
            f"Cannot resume from '{resume_file}': a resume file is named "
            f"'<best model>.{RESUME_KIND}.pth' and the resumed run writes its best model under "
            "that name; rename the file back to the name its run gave it."
        )
    return stem[: -len(suffix)] + extension


def save_checkpoint(state, path, exclusive=False):
    """``torch.save`` of ``state`` to ``path``, atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda stream: torch.save(state, stream), exclusive=exclusive)


def write_new_text_file(text, path):
    """Write ``text`` (UTF-8) atomically to ``path`` or, where it exists, to the next free
    ``<stem>-N<ext>`` (:func:`write_new_file`); never replaces a file. Returns the path
    written."""
    return write_new_file(path, lambda stream: stream.write(text.encode("utf-8")))


def create_checkpoint(state, model_file, resume=False):
    """Write ``state`` into a new file of a new run and return the best-model file name chosen.

    The name is ``model_file`` or the next free ``<stem>-N<ext>`` whose best-model file and
    resume file both do not exist; ``state`` goes to the best-model file, or with ``resume`` to
    its resume file. The file is created exclusively and complete (:func:`save_checkpoint`):
    two runs that start in the same second (RecBole's file names have one-second resolution)
    never write to the same file, and an interrupted run leaves no empty placeholder.
    """
    def write(stream):
        torch.save(state, stream)

    if resume:  # the resume file, where the best-model name is free too
        return write_new_file(model_file, write, written=resume_path, companion=lambda name: name)
    return write_new_file(model_file, write, companion=resume_path)


def read_checkpoint(path, trust=False, map_location="cpu"):
    r"""Load a checkpoint, safely unless ``trust`` is set.

    Args:
        path (str): checkpoint file.
        trust (bool): allow arbitrary unpickling for a foreign (RecBole-written) checkpoint.
        map_location: as for :func:`torch.load`.

    Returns:
        dict: the checkpoint.

    Raises:
        CheckpointError: the file is missing or is not a torch checkpoint.
        UntrustedCheckpointError: the file needs arbitrary unpickling and ``trust`` is False.
    """
    if path is None or not os.path.isfile(str(path)):
        raise CheckpointError(f"Checkpoint file '{path}' does not exist (or is not a file).")
    path = str(path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only load failed" not in str(error).lower():
            raise CheckpointError(f"Cannot read checkpoint '{path}': {error}") from None
        if not trust:
            raise UntrustedCheckpointError(
                f"Checkpoint '{path}' was not written by recbole-derrd: it pickles Python objects "
                "(RecBole stores its Config object in every checkpoint), and loading it would run "
                "whatever code the file contains. If you trust this file, opt in with "
                "`trust_checkpoint: True` (or `--trust_checkpoint=True`)."
            ) from None
        try:
            checkpoint = torch.load(path, map_location=map_location, weights_only=False)
        except Exception as unpickle_error:  # a trusted file can still be corrupt
            raise CheckpointError(f"Cannot read checkpoint '{path}': {unpickle_error}") from None
    except Exception as error:  # truncated or foreign bytes fail in many ways
        raise CheckpointError(
            f"Cannot read checkpoint '{path}': {type(error).__name__}: {error}"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"'{path}' is not a RecBole model checkpoint (no 'state_dict' entry)."
        )
    if "config" in checkpoint:
        checkpoint["config"] = plain_config(checkpoint["config"])
    return checkpoint


def read_resume_file(path, config):
    r"""Read the resume file of an interrupted run and check that ``config`` continues it,
    before any data is loaded or any teacher trained.

    The files the resumed run writes are the resume file itself and the best-model file whose
    name is derived from it (:func:`best_model_path`); the best-model file, where it exists,
    must be the one the interrupted run wrote (same ``run_id``): the run never writes to a file
    it did not create.

    Args:
        path (str): a resume file, or the best-model file of a run (its resume file, written
            beside it, is read).
        config (Config): the configuration of the run that continues.

    Returns:
        tuple: ``(resume file path, checkpoint)``; the checkpoint's ``best_model_file`` is
        replaced by the derived path.

    Raises:
        CheckpointError: missing, unreadable, not a resume file, of another model, dataset,
            split or seed, of a finished run, with no epoch left, or beside a best-model file
            that is not its own.
    """
    path = str(path)
    if os.path.isfile(resume_path(path)):
        path = resume_path(path)
    try:
        checkpoint = read_checkpoint(path)
    except UntrustedCheckpointError:
        checkpoint = {}  # RecBole's own checkpoints are no resume files: reported below
    if checkpoint.get("kind") != RESUME_KIND:
        raise CheckpointError(
            f"'{path}' is not a resume file. Runs of recbole-derrd write one at the start of "
            "every epoch beside their best-model file, '<best model>.resume.pth'; pass that "
            "file (or the best-model file it sits beside)."
        )
    check_resume_left(path, checkpoint, config)
    check_resume_settings(path, checkpoint["config"], config)
    checkpoint["best_model_file"] = check_resume_best_model(path, checkpoint)
    return path, checkpoint


def check_resume_left(path, checkpoint, config):
    """The resume file ``checkpoint`` is of this model and dataset and has epochs left."""
    stored = checkpoint["config"]
    for key in ("model", "dataset"):
        if str(stored.get(key)).lower() != str(config[key]).lower():
            raise CheckpointError(
                f"Cannot resume from '{path}': it continues a run of {key} {stored.get(key)}, "
                f"this run's {key} is {config[key]}."
            )
    if checkpoint.get("finished"):
        raise CheckpointError(
            f"Cannot resume from '{path}': that run finished (after epoch "
            f"{checkpoint['epoch']}, all epochs or early stopping): nothing is left to train."
        )
    start_epoch = checkpoint["epoch"] + 1
    if start_epoch >= config["epochs"]:
        raise CheckpointError(
            f"Cannot resume from '{path}': it stopped at the start of epoch {start_epoch} and "
            f"this run has epochs={config['epochs']}: nothing is left to train."
        )


def check_resume_settings(path, stored, config):
    """The interrupted run's configuration ``stored`` has this run's data, split and seed, and
    the settings that shape the model's parameters (and an on-demand teacher's)."""

    def changes(keys):
        return "; ".join(f"{key}: {stored.get(key)!r} -> {to_plain(config[key])!r}" for key in keys)

    differing = [key for key in SPLIT_KEYS if to_plain(stored.get(key)) != to_plain(config[key])]
    if differing:
        raise CheckpointError(
            f"Cannot resume from '{path}': it was trained with other data, split or seed "
            f"settings than this run ({changes(differing)}). Resume with the interrupted run's settings."
        )
    # the keys that shape the model's parameters: its backbones' and the distiller's own
    changed = [key for key in parameter_keys(config.model_class)
               if to_plain(stored.get(key)) != to_plain(config[key])]
    if not config["teacher_checkpoint"]:  # an on-demand teacher: it must be the same one
        changed += [key for key in ON_DEMAND_TEACHER_KEYS
                    if to_plain(stored.get(key)) != to_plain(config[key])]
    if changed:
        raise CheckpointError(
            f"Cannot resume from '{path}': its parameters do not fit this model, or its teacher "
            f"is another one (settings changed: {changes(changed)}). Resume with the "
            "interrupted run's settings."
        )


def check_resume_best_model(path, checkpoint):
    """The best-model file the resumed run writes (derived from ``path``): where it exists it
    must be the interrupted run's own (same ``run_id``). Returns its path."""
    run_id = checkpoint.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        raise CheckpointError(
            f"Cannot resume from '{path}': it does not say which run wrote it (no 'run_id'; "
            "written by an older version of recbole-derrd?), so its best-model file cannot "
            "be told apart from another file. Start a new run."
        )
    best_model_file = best_model_path(path)
    if os.path.lexists(best_model_file):
        try:
            owner = None if os.path.islink(best_model_file) else read_checkpoint(best_model_file)
        except CheckpointError:
            owner = None
        if owner is None or owner.get("run_id") != run_id:
            raise CheckpointError(
                f"Cannot resume from '{path}': '{best_model_file}', where the resumed run "
                "writes its best model, is not the best model of the interrupted run (another "
                "file by that name); it is left untouched. Move it away, or start a new run."
            )
    elif checkpoint["best_valid_result"] is not None:
        raise CheckpointError(
            f"Cannot resume from '{path}': its best model, {best_model_file}, is missing (it "
            "was saved there before the run stopped)."
        )
    return best_model_file


def check_resume_split(path, checkpoint, train_dataset, data_fingerprint=None):
    """Refuse to resume ``checkpoint`` on another training split than its own (the dataset
    files changed), right after the data is loaded and before a teacher is trained.
    ``data_fingerprint``: ``split_fingerprint(train_dataset)``, if already computed.

    Raises:
        CheckpointError
    """
    if data_fingerprint is None:
        data_fingerprint = split_fingerprint(train_dataset)
    if checkpoint.get("split_fingerprint") != data_fingerprint:
        raise CheckpointError(
            f"Cannot resume from '{path}': it was trained on another training split than this "
            "run's (same dataset name, different interactions or split settings)."
        )


def differing_settings(stored, current):
    """Keys that decide what a model learns on which two plain configurations disagree, as
    ``{key: (stored, current)}``."""
    stored, current = learned_from(stored), learned_from(current)
    return {
        key: (stored.get(key), current.get(key))
        for key in sorted(set(stored) | set(current))
        if stored.get(key) != current.get(key)
    }
