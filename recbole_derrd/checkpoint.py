"""
recbole_derrd.checkpoint
########################
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
(:meth:`SafeCheckpointMixin.resume_checkpoint`).
"""

import enum
import os
import pickle
import tempfile
import time
import uuid
from collections import OrderedDict
from logging import getLogger

import numpy as np
import torch

from recbole.utils import set_color

from recbole_derrd.data import split_fingerprint, training_split
from recbole_derrd.errors import CheckpointError, UntrustedCheckpointError
from recbole_derrd.distributed import (
    barrier,
    broadcast_object,
    gather_objects,
    global_rank,
    is_distributed,
    writes_files,
)
from recbole_derrd.keys import SPLIT_KEYS, learned_from
from recbole_derrd.random_state import run_random_state, set_run_random_state

#: Written into every checkpoint of this plugin, so that a reader knows the layout.
CHECKPOINT_FORMAT = "recbole-derrd/1"

#: ``kind`` of a resume file (other checkpoints of the plugin have no ``kind``).
RESUME_KIND = "resume"

#: Keys that decide the shapes of a model's parameters (a distiller's student and experts, or
#: a baseline): a resume with other values cannot fit, and is refused before any work.
PARAMETER_KEYS = [
    "student_model",
    "embedding_size",
    "mf_embedding_size",
    "mlp_embedding_size",
    "mlp_hidden_size",
    "use_de",
    "de_num_experts",
    "de_selection",
    "de_layer",
]

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


def unique_path(path, companion=None):
    """``path`` itself if free, else ``<stem>-1<ext>``, ``<stem>-2<ext>``...: never overwrite.

    Args:
        companion (callable): maps a candidate to another file written with it (a best-model
            file's resume file); a candidate is free only if its companion is free too.
    """

    def free(candidate):
        return not os.path.exists(candidate) and (
            companion is None or not os.path.exists(companion(candidate))
        )

    stem, extension = os.path.splitext(path)
    candidate, index = path, 0
    while not free(candidate):
        index += 1
        candidate = f"{stem}-{index}{extension}"
    return candidate


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


def _new_file_mode():
    """The permissions ``open`` gives a new file: 0666 less the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path, write, exclusive=False):
    """Write a file atomically: ``write(stream)`` fills a temporary file in the same folder,
    which is flushed to disk, then renamed into place, so an interrupt or crash at any moment
    leaves the previous complete file at ``path`` (or none), never a partial one, and no
    temporary file (short of a hard kill, which can leave a hidden ``.<name>.*.tmp``).

    Args:
        write (callable): writes the content to a binary stream.
        exclusive (bool): never replace an existing file (raise ``FileExistsError``): the
            file is linked into place, which fails atomically when ``path`` exists.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, _new_file_mode())  # mkstemp's files are private (0600)
        if exclusive:
            os.link(temporary, path)  # FileExistsError if taken, never a replacement
        else:
            os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def save_checkpoint(state, path, exclusive=False):
    """``torch.save`` of ``state`` to ``path``, atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda stream: torch.save(state, stream), exclusive=exclusive)


def write_new_text_file(text, path):
    """Write ``text`` (UTF-8) atomically to ``path`` or, where it exists, to the next free
    ``<stem>-N<ext>``; never replaces a file. Returns the path written."""
    candidate = path
    while True:
        candidate = unique_path(candidate)
        try:
            atomic_write(candidate, lambda stream: stream.write(text.encode("utf-8")), exclusive=True)
            return candidate
        except FileExistsError:
            continue  # taken in between by another writer


def create_checkpoint(state, model_file, resume=False):
    """Write ``state`` into a new file of a new run and return the best-model file name chosen.

    The name is ``model_file`` or the next free ``<stem>-N<ext>`` whose best-model file and
    resume file both do not exist; ``state`` goes to the best-model file, or with ``resume`` to
    its resume file. The file is created exclusively and complete (:func:`save_checkpoint`):
    two runs that start in the same second (RecBole's file names have one-second resolution)
    never write to the same file, and an interrupted run leaves no empty placeholder.
    """
    stem, extension = os.path.splitext(model_file)
    candidate, index = model_file, 0
    while True:
        target, companion = (
            (resume_path(candidate), candidate) if resume else (candidate, resume_path(candidate))
        )
        if not os.path.lexists(companion):
            try:
                save_checkpoint(state, target, exclusive=True)
                return candidate
            except FileExistsError:
                pass
        index += 1
        candidate = f"{stem}-{index}{extension}"


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
    differing = [
        key for key in SPLIT_KEYS if to_plain(stored.get(key)) != to_plain(config[key])
    ]
    if differing:
        raise CheckpointError(
            f"Cannot resume from '{path}': it was trained with other data, split or seed "
            "settings than this run ("
            + "; ".join(f"{key}: {stored.get(key)!r} -> {to_plain(config[key])!r}" for key in differing)
            + "). Resume with the interrupted run's settings."
        )
    changed = [key for key in PARAMETER_KEYS if to_plain(stored.get(key)) != to_plain(config[key])]
    if not config["teacher_checkpoint"]:  # an on-demand teacher: it must be the same one
        changed += [key for key in ON_DEMAND_TEACHER_KEYS
                    if to_plain(stored.get(key)) != to_plain(config[key])]
    if changed:
        raise CheckpointError(
            f"Cannot resume from '{path}': its parameters do not fit this model, or its teacher "
            "is another one (settings changed: "
            + "; ".join(f"{key}: {stored.get(key)!r} -> {to_plain(config[key])!r}" for key in changed)
            + "). Resume with the interrupted run's settings."
        )
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
    checkpoint["best_model_file"] = best_model_file
    return path, checkpoint


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


class SafeCheckpointMixin:
    r"""Mixed into a RecBole ``Trainer``: checkpoints that load with ``weights_only=True``, and
    runs that resume where they stopped.

    RecBole's layout is kept (``config``, ``epoch``, ``cur_step``, ``best_valid_score``,
    ``state_dict``, ``other_parameter``, ``optimizer``) with the config as a plain dict, plus
    ``format`` and ``model``. A new checkpoint never overwrites an existing file (RecBole's
    names have one-second resolution).

    RecBole saves the model only when validation improves, so resuming from that file would
    go back to the best epoch. Here every epoch starts by writing :attr:`resume_file` (this
    run's own, overwritten each epoch): the checkpoint state plus ``kind: resume``, the best
    validation result, the training losses so far, the best-model file's name and the random
    generators of every process (:mod:`recbole_derrd.random_state`). A resumed run restores all
    of it and continues writing the same two files.
    """

    def __init__(self, config, model):
        super().__init__(config, model)
        self.saved_model_file = unique_path(self.saved_model_file, companion=resume_path)
        #: Written into every file of this run: a resumed run writes only to files that carry
        #: its own id.
        self.run_id = uuid.uuid4().hex
        #: This run's resume file; None: not written.
        self.resume_file = resume_path(self.saved_model_file)
        self.split_fingerprint = None
        #: The run's :class:`~recbole_derrd.data.TrainingSplit`, if the run computed it.
        self.training_split = None
        self.writes_resume_file = False
        self.resumed_split = None
        self.resumed_random_state = None
        self.files_reserved = False
        #: Wall time of every training epoch of this run (the per-epoch work of a distiller
        #: included, evaluation excluded).
        self.epoch_seconds = []

    def fit(
        self,
        train_data,
        valid_data=None,
        verbose=True,
        saved=True,
        show_progress=False,
        callback_fn=None,
    ):
        # Recorded in every checkpoint, so that a model used later as a teacher can be
        # checked against the student's training split.
        self.split_fingerprint = training_split(train_data.dataset, self.training_split).fingerprint
        if self.resumed_split is not None and self.resumed_split != self.split_fingerprint:
            raise CheckpointError(
                f"Cannot resume from '{self.resume_file}': it was trained on another training "
                "split than this run's (same dataset name, different interactions or split "
                "settings)."
            )
        self.writes_resume_file = saved and self.resume_file is not None
        result = super().fit(
            train_data,
            valid_data,
            verbose=verbose,
            saved=saved,
            show_progress=show_progress,
            callback_fn=callback_fn,
        )
        if self.writes_resume_file and writes_files(self.config) and os.path.isfile(self.resume_file):
            # the run ended (all epochs, or early stopping): resuming it would train again
            state = torch.load(self.resume_file, map_location="cpu", weights_only=True)
            state["finished"] = True
            save_checkpoint(state, self.resume_file)
        return result

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if self.resumed_random_state is not None:
            set_run_random_state(self.resumed_random_state, train_data)
            self.resumed_random_state = None
        elif self.writes_resume_file:
            self._save_resume_file(epoch_idx - 1, train_data)
        start = time.perf_counter()
        losses = super()._train_epoch(
            train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress
        )
        self.epoch_seconds.append(time.perf_counter() - start)
        return losses

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
            "run_id": self.run_id,
        }

    def restore_state(self, checkpoint):
        """Inverse of :meth:`checkpoint_state` beyond RecBole's fields; subclasses extend it."""

    def _write_own_file(self, state, resume):
        """Write ``state`` to this run's best-model file (or, with ``resume``, its resume file).

        The first write of a run claims the pair of names (:func:`create_checkpoint`: the next
        free ones, created exclusively and complete); global rank 0 chooses and every process
        of a multi-process run takes its choice. Every process calls this; only those that
        write files write.
        """
        if not self.files_reserved:
            chosen = None
            if global_rank(self.config) == 0:
                chosen = create_checkpoint(state, self.saved_model_file, resume=resume)
            self.saved_model_file = broadcast_object(chosen, self.config)
            if self.resume_file is not None:  # None: this run writes no resume file
                self.resume_file = resume_path(self.saved_model_file)
            self.files_reserved = True
            if global_rank(self.config) == 0:
                return
        if writes_files(self.config):
            save_checkpoint(state, self.resume_file if resume else self.saved_model_file)

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        saved_model_file = kwargs.pop("saved_model_file", None)
        state = self.checkpoint_state(epoch) if writes_files(self.config) else None
        if saved_model_file is not None:  # an explicit file, RecBole's keyword
            if writes_files(self.config):
                save_checkpoint(state, saved_model_file)
        else:
            self._write_own_file(state, resume=False)
            saved_model_file = self.saved_model_file
        if verbose and writes_files(self.config):
            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")

    def resume_state(self, epoch, train_data):
        """The dictionary of :attr:`resume_file` after ``epoch`` (-1: before the first).

        Every process takes part (its random generators are gathered); the result is only
        meaningful where :func:`~recbole_derrd.distributed.writes_files` holds.
        """
        random_states = gather_objects(run_random_state(train_data), self.config)
        state = self.checkpoint_state(epoch)
        state.update(
            kind=RESUME_KIND,
            best_model_file=os.path.basename(self.saved_model_file),
            best_valid_result=to_plain(self.best_valid_result),
            train_loss=[[epoch_idx, loss] for epoch_idx, loss in self.train_loss_dict.items()],
            random_states=random_states,
        )
        return state

    def _save_resume_file(self, epoch, train_data):
        state = self.resume_state(epoch, train_data)
        state["finished"] = False
        self._write_own_file(state, resume=True)

    def _load_model_state(self, checkpoint):
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))

    def resume_checkpoint(self, resume_file):
        r"""Continue an interrupted run from its resume file (or its best-model file, beside
        which the resume file is): from the epoch it was in, with its model, optimizer,
        early-stopping state, training losses and random generators, writing its best-model
        and resume files on.

        Raises:
            CheckpointError: as :func:`read_resume_file`, or parameters that do not fit.
                Another training split is reported by :meth:`fit`, before the first epoch.
        """
        resume_file, checkpoint = read_resume_file(resume_file, self.config)
        start_epoch = checkpoint["epoch"] + 1
        best_model_file = checkpoint["best_model_file"]  # derived from resume_file's name
        try:
            self._load_model_state(checkpoint)
            self.optimizer.load_state_dict(checkpoint["optimizer"])  # moved to the parameters' device
        except (RuntimeError, ValueError, KeyError) as error:
            raise CheckpointError(
                f"Cannot resume from '{resume_file}': its parameters do not fit this model "
                f"(was the run started with other settings?): {error}"
            ) from None
        self.start_epoch = start_epoch
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        if checkpoint["best_valid_result"] is not None:
            self.best_valid_result = OrderedDict(checkpoint["best_valid_result"])
        self.train_loss_dict = {epoch: loss for epoch, loss in checkpoint["train_loss"]}
        self.saved_model_file = best_model_file
        self.resume_file = resume_file
        self.run_id = checkpoint["run_id"]  # the files keep the interrupted run's id
        self.files_reserved = True  # this run's own files
        self.resumed_split = checkpoint["split_fingerprint"]
        random_states = checkpoint["random_states"]
        if len(random_states) == (self.config["world_size"] if is_distributed(self.config) else 1):
            self.resumed_random_state = random_states[global_rank(self.config)]
        else:
            self.logger.warning(
                f"'{resume_file}' was written by a run of {len(random_states)} process(es): the "
                "random generators are not restored, so the run continues, but not exactly as "
                "the interrupted one would have."
            )
        self.restore_state(checkpoint)
        differing = differing_settings(checkpoint["config"], plain_config(self.config))
        if differing:
            self.logger.warning(
                "Resuming with other settings than the interrupted run: "
                + "; ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in differing.items())
            )
        self.logger.info(
            f"Resuming {resume_file}: training continues at epoch {self.start_epoch}, the best "
            f"model is kept in {self.saved_model_file}"
        )

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and eval_data:
            barrier(self.config)  # the best model may just have been written by another process
            checkpoint_file = model_file or self.saved_model_file
            checkpoint = read_checkpoint(
                checkpoint_file,
                trust=bool(self.config["trust_checkpoint"]),
                map_location=self.device,
            )
            self._load_model_state(checkpoint)
            getLogger().info(f"Loading model structure and parameters from {checkpoint_file}")
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)
