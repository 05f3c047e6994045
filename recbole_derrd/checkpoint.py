"""
recbole_derrd.checkpoint
########################
Checkpoints that load with ``torch.load(weights_only=True)``.

RecBole pickles its ``Config`` object (which holds the model class) into every checkpoint, so
torch >= 2.6 refuses to load them by default, and loading them with ``weights_only=False``
runs arbitrary pickled code. This plugin writes plain dictionaries of tensors and primitives
instead, and unpickles a foreign RecBole checkpoint only when the user asked for it
(``trust_checkpoint=True``).
"""

import enum
import os
import pickle
from logging import getLogger

import numpy as np
import torch

from recbole.utils import set_color

from recbole_derrd.data import split_fingerprint

#: Written into every checkpoint of this plugin, so that a reader knows the layout.
CHECKPOINT_FORMAT = "recbole-derrd/1"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or unsuitable."""


class UntrustedCheckpointError(CheckpointError):
    """A checkpoint needs arbitrary unpickling and the user did not opt in."""


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


def unique_path(path):
    """``path`` itself if free, else ``<stem>-1<ext>``, ``<stem>-2<ext>``...: never overwrite."""
    if not os.path.exists(path):
        return path
    stem, extension = os.path.splitext(path)
    index = 1
    while os.path.exists(f"{stem}-{index}{extension}"):
        index += 1
    return f"{stem}-{index}{extension}"


def save_checkpoint(state, path):
    """Write ``state`` atomically (a crash never leaves a half-written file at ``path``)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    torch.save(state, temporary)
    os.replace(temporary, path)


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


class SafeCheckpointMixin:
    r"""Mixed into a RecBole ``Trainer``: checkpoints that load with ``weights_only=True``.

    RecBole's layout is kept (``config``, ``epoch``, ``cur_step``, ``best_valid_score``,
    ``state_dict``, ``other_parameter``, ``optimizer``) with the config as a plain dict, plus
    ``format`` and ``model``. A new checkpoint never overwrites an existing file (RecBole's
    names have one-second resolution).
    """

    def __init__(self, config, model):
        super().__init__(config, model)
        self.saved_model_file = unique_path(self.saved_model_file)
        self.split_fingerprint = None

    def fit(self, train_data, *args, **kwargs):
        # Recorded in every checkpoint, so that a model used later as a teacher can be
        # checked against the student's training split.
        self.split_fingerprint = split_fingerprint(train_data.dataset)
        return super().fit(train_data, *args, **kwargs)

    def checkpoint_state(self, epoch):
        """The dictionary written by :meth:`_save_checkpoint`; subclasses extend it."""
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.config["model"],
            "config": plain_config(self.config),
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": float(self.best_valid_score),
            "state_dict": self.model.state_dict(),
            "other_parameter": tensor_other_parameters(self.model),
            "optimizer": self.optimizer.state_dict(),
            "split_fingerprint": self.split_fingerprint,
        }

    def restore_state(self, checkpoint):
        """Inverse of :meth:`checkpoint_state` beyond RecBole's fields; subclasses extend it."""

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        save_checkpoint(self.checkpoint_state(epoch), saved_model_file)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")

    def _load_model_state(self, checkpoint):
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))

    def resume_checkpoint(self, resume_file):
        resume_file = str(resume_file)
        checkpoint = read_checkpoint(
            resume_file, trust=bool(self.config["trust_checkpoint"]), map_location=self.device
        )
        if checkpoint["config"]["model"].lower() != self.config["model"].lower():
            raise CheckpointError(
                f"Cannot resume: '{resume_file}' holds a {checkpoint['config']['model']} model, "
                f"this run trains {self.config['model']}."
            )
        self.saved_model_file = resume_file
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        self._load_model_state(checkpoint)
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.restore_state(checkpoint)
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and eval_data:
            checkpoint_file = model_file or self.saved_model_file
            checkpoint = read_checkpoint(
                checkpoint_file,
                trust=bool(self.config["trust_checkpoint"]),
                map_location=self.device,
            )
            self._load_model_state(checkpoint)
            getLogger().info(f"Loading model structure and parameters from {checkpoint_file}")
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)
