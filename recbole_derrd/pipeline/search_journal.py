r"""
recbole_derrd.pipeline.search_journal
#####################################
The journal of a weight search (:mod:`recbole_derrd.pipeline.weight_search`), so that a search stopped
part-way (a session that ends, a killed process) continues where it stopped instead of
training every trial again: on a large dataset one trial is a whole run (an hour or more on
a CPU), and a search is four to eight of them.

A run that saves checkpoints writes, in its ``checkpoint_dir``,
``weight-search-<model>-<dataset>-<digest>.pth``: every finished trial's result (validation
score and result, epochs, seconds, its training record). Each trial trains as a run does,
with a best-model file and a resume file of its own beside the journal,
``<journal stem>.trial-<hash of its weights>.pth`` and ``.resume.pth``
(:mod:`recbole_derrd.files.checkpoint`). The same search started again (the same command) finds the
journal by its name, takes the finished trials from it, and continues the trial that was
running from the epoch it stopped in (its resume file). A finished trial drops its resume
file and, if it is as long as the run (the run adopts it if it is chosen), keeps its best-model
file. All these files load with ``torch.load(weights_only=True)``. The search holds a lock on
``<journal>.lock`` (:func:`~recbole_derrd.teacher.cache.training_lock`): two runs of the same
search one after the other, never both at once on the same files.

``<digest>`` is a hash of what the trials depend on: every configuration key that
decides what a model learns (:func:`~recbole_derrd.settings.keys.learned_from`: model, data, split,
seed, the weights given and those set to ``auto``, the candidates, the trial length...), the
training split's fingerprint and the teacher file (path, size, modification time). A search
with any other setting has another name and never reads this one; the digest's inputs are
stored in the file and compared again when it is read. Not in it, as for a resume file: the
device and the library versions. The run removes the journal and its trials' files once it
has trained (or adopted its trial), tested and compared its model; a run continued later with
``--resume`` does not (delete them by hand).
"""

import contextlib
import hashlib
import json
import os
from collections import OrderedDict

import torch

from recbole_derrd.files.checkpoint import CHECKPOINT_FORMAT, plain_config, read_checkpoint, save_checkpoint, to_plain
from recbole_derrd.errors import CheckpointError
from recbole_derrd.settings.keys import learned_from
from recbole_derrd.teacher.cache import training_lock

#: ``kind`` of a journal file.
JOURNAL_KIND = "weight-search-journal"
#: The layout of the journal's entries, part of its identity: a journal of another layout
#: has another name and is never read.
JOURNAL_LAYOUT = 2


def journal_identity(config, split_fingerprint, trial_settings, teacher_path=None):
    """What a search's trials depend on (plain data): the configuration keys that decide what
    a model learns (with the ``auto`` weights as given), the training split's fingerprint, the
    teacher file (``teacher_path``: the run's teacher, given or trained on demand; default
    ``teacher_checkpoint``), and the trials' own settings (length, schedules)."""
    teacher = teacher_path or config["teacher_checkpoint"]
    teacher_file = None
    if teacher and os.path.isfile(teacher):
        status = os.stat(teacher)
        teacher_file = [os.path.abspath(teacher), status.st_size, status.st_mtime_ns]
    return to_plain({
        "layout": JOURNAL_LAYOUT,
        "config": learned_from(plain_config(config)),
        "split_fingerprint": split_fingerprint,
        "teacher_file": teacher_file,
        "trial_settings": trial_settings,
    })


def journal_path(config, identity):
    """``<checkpoint_dir>/weight-search-<model>-<dataset>-<digest>.pth`` for ``identity``."""
    text = json.dumps(identity, sort_keys=True, default=str)
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]
    # not "<model>-...": the names of a model's runs, which an interrupted run is looked up by
    name = f"weight-search-{config['model']}-{config['dataset']}-{digest}.pth"
    return os.path.join(config["checkpoint_dir"], name)


def trial_key(settings):
    """The journal's key of a trial: its weight settings (``{key: value}``), sorted."""
    return ",".join(f"{key}={value}" for key, value in sorted(settings.items()))


def _load(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated or foreign bytes fail in many ways
        raise CheckpointError(
            f"Cannot read the weight-search journal '{path}': {type(error).__name__}: {error}. "
            "Delete it (and its '.trial-*.pth' files) to search from the first trial."
        ) from None


class SearchJournal:
    """The finished trials of one weight search, on disk (module docstring).

    Args:
        path (str): the journal file (:func:`journal_path`).
        identity (dict): :func:`journal_identity` of the search.
    """

    def __init__(self, path, identity):
        self.path = path
        self.identity = identity
        #: ``{trial_key: record}``: ``result`` (the trial's plain result), ``record`` (its
        #: training record: losses, epoch seconds and diagnostics) and ``model_file`` (the name
        #: of its best-model file beside the journal, or None: it never improved).
        self.trials = {}

    @classmethod
    @contextlib.contextmanager
    def opened(cls, config, split_fingerprint, trial_settings, teacher_path=None):
        """The journal of this search, with the trials an interrupted run of it finished (or
        none), its lock held for the block (another run of the same search waits).

        Raises:
            CheckpointError: a file by the journal's name that is no journal of this search.
        """
        identity = journal_identity(config, split_fingerprint, trial_settings, teacher_path)
        journal = cls(journal_path(config, identity), identity)
        with training_lock(journal.path, "weight-search"):
            journal.read()
            yield journal

    def read(self):
        """Take the finished trials of the journal's file, if there is one."""
        if not os.path.isfile(self.path):
            return
        stored = _load(self.path)
        if (not isinstance(stored, dict) or stored.get("kind") != JOURNAL_KIND
                or stored.get("identity") != self.identity):
            raise CheckpointError(
                f"'{self.path}' is not the journal of this weight search (another file, or a "
                "search with other settings by the same name); it is left untouched. Move it "
                "away to search from the first trial."
            )
        for entry in stored["trials"].values():  # names only, beside the journal
            name = entry["model_file"]
            if name is not None and (os.path.basename(name) != name
                                     or not name.startswith(self.trial_prefix())):
                raise CheckpointError(f"'{self.path}' names a trial file '{name}' that is not "
                                      "one of its own; it is left untouched.")
        self.trials = dict(stored["trials"])

    def trial_prefix(self):
        """The start of the name of every trial file of this journal."""
        return os.path.basename(os.path.splitext(self.path)[0]) + ".trial-"

    def trial_model_file(self, settings):
        """The best-model file of the trial with weight ``settings`` (its resume file beside
        it): named after the journal and the settings, so a search started again finds it."""
        digest = hashlib.sha1(trial_key(settings).encode("utf-8")).hexdigest()[:10]
        return self._beside(f"{self.trial_prefix()}{digest}.pth")

    def finished(self, settings):
        """The result of the finished trial with weight ``settings``, or None.

        A trial recorded with a best model whose file is gone counts as not finished."""
        entry = self.trials.get(trial_key(settings))
        if entry is None:
            return None
        if entry["model_file"] is not None and not os.path.isfile(self._beside(entry["model_file"])):
            return None
        return dict(entry["result"])

    def trained_run(self, settings):
        """The training of the finished trial with weight ``settings``, as
        :meth:`~recbole_derrd.trainer.SafeCheckpointMixin.trained_run` returns it (the best
        epoch's state read from its file), or None when it never improved."""
        entry = self.trials[trial_key(settings)]
        if entry["model_file"] is None:
            return None
        state = read_checkpoint(self._beside(entry["model_file"]))
        return stored_trained_run(state, entry["result"], entry["record"])

    def record(self, settings, result, training_record, model_file):
        """Add a finished trial (its plain ``result``, its ``training_record`` and its
        best-model file, or None), written atomically."""
        self.trials[trial_key(settings)] = {
            "result": to_plain(result),
            "record": to_plain(training_record),
            "model_file": None if model_file is None else os.path.basename(model_file),
        }
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        save_checkpoint({"format": CHECKPOINT_FORMAT, "kind": JOURNAL_KIND,
                         "identity": self.identity, "trials": self.trials}, self.path)

    def files(self):
        """The journal and its trials' files that exist (a running trial's too)."""
        folder = os.path.dirname(self.path) or "."
        trial_files = [] if not os.path.isdir(folder) else sorted(
            os.path.join(folder, name) for name in os.listdir(folder)
            if name.startswith(self.trial_prefix()) and name.endswith(".pth"))
        return [path for path in [self.path] + trial_files if os.path.isfile(path)]

    def remove(self):
        """Remove the journal and its trials' files (the run they served is done), once no
        other run of the same search holds its lock."""
        with training_lock(self.path, "weight-search"):
            for path in self.files():
                os.remove(path)

    def _beside(self, name):
        return os.path.join(os.path.dirname(self.path), name)


def stored_trained_run(state, result, training_record):
    """A trial's training as :meth:`~recbole_derrd.trainer.SafeCheckpointMixin.trained_run`
    returns it, from its best epoch's checkpoint ``state``, its ``result`` and its
    ``training_record`` (``train_loss`` as ``[[epoch, loss]...]``, ``epoch_seconds``,
    ``epoch_diagnostics``)."""
    best_valid_result = result.get("best_valid_result")
    return {
        "state": state,
        "best_valid_score": result["best_valid_score"],
        "best_valid_result": None if best_valid_result is None else OrderedDict(best_valid_result),
        "train_loss": {epoch: loss for epoch, loss in training_record["train_loss"]},
        "epoch_seconds": list(training_record["epoch_seconds"]),
        "epoch_diagnostics": list(training_record["epoch_diagnostics"]),
    }
