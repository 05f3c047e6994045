r"""
recbole_derrd.search_journal
############################
The journal of a weight search (:mod:`recbole_derrd.weight_search`), so that a search stopped
part-way (a session that ends, a killed process) continues where it stopped instead of
training every trial again: on a large dataset one trial is a whole run (an hour or more on
a CPU), and a search is four to eight of them.

A run that saves checkpoints writes, in its ``checkpoint_dir``,
``<model>-<dataset>-weight-search-<digest>.pth``: every finished trial's result (validation
score and result, epochs, seconds) and, for a trial as long as the run (one the run may
adopt), the trial's training beside it, ``<journal stem>.trial-<N>.pth`` (its best model and
optimizer state, as :meth:`~recbole_derrd.trainer.SafeCheckpointMixin.trained_run` returns
it). The same search started again (the same command) finds the file by its name and takes
the finished trials from it; the trial that was running when it stopped is trained again from
its start. Both files load with ``torch.load(weights_only=True)``.

``<digest>`` is a hash of everything the trials depend on: every configuration key that
decides what a model learns (:func:`~recbole_derrd.keys.learned_from`: model, data, split,
seed, the weights given and those set to ``auto``, the candidates, the trial length...), the
training split's fingerprint and the teacher file (path, size, modification time). A search
with any other setting has another name and never reads this one; the digest's inputs are
stored in the file and compared again when it is read. The run removes the journal and its
trial files once it has trained (or adopted its trial) and saved its best model.
"""

import hashlib
import json
import os
from collections import OrderedDict

import torch

from recbole_derrd.checkpoint import CHECKPOINT_FORMAT, plain_config, save_checkpoint, to_plain
from recbole_derrd.errors import CheckpointError
from recbole_derrd.keys import learned_from

#: ``kind`` of a journal file.
JOURNAL_KIND = "weight-search-journal"


def journal_identity(config, split_fingerprint, trial_settings):
    """What a search's trials depend on (plain data): the configuration keys that decide what
    a model learns (with the ``auto`` weights as given), the training split's fingerprint, the
    teacher file, and the trials' own settings (length, schedules)."""
    teacher = config["teacher_checkpoint"]
    teacher_file = None
    if teacher and os.path.isfile(teacher):
        status = os.stat(teacher)
        teacher_file = [os.path.abspath(teacher), status.st_size, status.st_mtime_ns]
    return to_plain({
        "config": learned_from(plain_config(config)),
        "split_fingerprint": split_fingerprint,
        "teacher_file": teacher_file,
        "trial_settings": trial_settings,
    })


def journal_path(config, identity):
    """``<checkpoint_dir>/<model>-<dataset>-weight-search-<digest>.pth`` for ``identity``."""
    text = json.dumps(identity, sort_keys=True, default=str)
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]
    name = f"{config['model']}-{config['dataset']}-weight-search-{digest}.pth"
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
            "Delete it (and its '.trial-N.pth' files) to search from the first trial."
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
        #: ``{trial_key: record}``: ``result`` (the trial's plain result) and ``run_file`` (the
        #: name of its training's file beside the journal, or None).
        self.trials = {}

    @classmethod
    def open(cls, config, split_fingerprint, trial_settings):
        """The journal of this search: the trials an interrupted run of it finished, or none.

        Raises:
            CheckpointError: a file by the journal's name that is no journal of this search.
        """
        identity = journal_identity(config, split_fingerprint, trial_settings)
        journal = cls(journal_path(config, identity), identity)
        if os.path.isfile(journal.path):
            stored = _load(journal.path)
            if (not isinstance(stored, dict) or stored.get("kind") != JOURNAL_KIND
                    or stored.get("identity") != identity):
                raise CheckpointError(
                    f"'{journal.path}' is not the journal of this weight search (another "
                    "file, or a search with other settings by the same name); it is left "
                    "untouched. Move it away to search from the first trial."
                )
            journal.trials = dict(stored["trials"])
        return journal

    def finished(self, settings):
        """The result of the finished trial with weight ``settings``, or None.

        A trial recorded with its training whose file is gone counts as not finished."""
        record = self.trials.get(trial_key(settings))
        if record is None:
            return None
        if record["run_file"] is not None and not os.path.isfile(self._beside(record["run_file"])):
            return None
        return dict(record["result"])

    def trained_run(self, settings):
        """The training of the finished trial with weight ``settings`` (as
        :meth:`~recbole_derrd.trainer.SafeCheckpointMixin.trained_run` returned it), or None
        when the journal holds only its result."""
        record = self.trials[trial_key(settings)]
        if record["run_file"] is None:
            return None
        run = _load(self._beside(record["run_file"]))
        if run.get("best_valid_result") is not None:
            run["best_valid_result"] = OrderedDict(run["best_valid_result"])
        return run

    def record(self, settings, result, trained_run=None):
        """Add a finished trial: its training first (when given), then the journal that
        names it, each written atomically, so an interruption never leaves a journal
        entry without its file."""
        run_file = None
        if trained_run is not None:
            stem = os.path.splitext(os.path.basename(self.path))[0]
            run_file = f"{stem}.trial-{len(self.trials) + 1}.pth"
            # as the trainer gave it (the optimizer's state keeps its integer keys); the
            # metrics and diagnostics as plain data
            run = dict(trained_run,
                       best_valid_score=float(trained_run["best_valid_score"]),
                       best_valid_result=to_plain(trained_run["best_valid_result"]),
                       epoch_diagnostics=to_plain(trained_run.get("epoch_diagnostics", [])))
            save_checkpoint(run, self._beside(run_file))
        self.trials[trial_key(settings)] = {"result": to_plain(result), "run_file": run_file}
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        save_checkpoint({"format": CHECKPOINT_FORMAT, "kind": JOURNAL_KIND,
                         "identity": self.identity, "trials": self.trials}, self.path)

    def files(self):
        """The journal and its trial files that exist."""
        names = [record["run_file"] for record in self.trials.values() if record["run_file"]]
        paths = [self.path] + [self._beside(name) for name in names]
        return [path for path in paths if os.path.isfile(path)]

    def remove(self):
        """Remove the journal and its trial files (the run they served has saved its model)."""
        for path in self.files():
            os.remove(path)

    def _beside(self, name):
        return os.path.join(os.path.dirname(self.path), name)
