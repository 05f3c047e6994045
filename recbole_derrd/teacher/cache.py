"""
recbole_derrd.teacher.cache
###########################
Where a model trained on demand by a distillation run is cached, and how two runs share it: the
on-demand teacher, and the student trained alone that the distilled student is compared with
(:mod:`recbole_derrd.pipeline.student_alone`). Both are trained by the run, in a configuration of
their own (:func:`recbole_derrd.pipeline.training.find_or_train`), never by a model: a model is handed
its teacher, or loads the one ``teacher_checkpoint`` names (:mod:`recbole_derrd.teacher.loading`).

- A model trained on demand is saved as ``<checkpoint_dir>/<role>-<Model>-<dataset>-
  <fingerprint>.pth`` (role ``teacher`` or ``student-alone``). The fingerprint hashes the
  model's configuration and the training split, so a later run with the same data and
  settings reuses the file, and any change trains (and saves) a new one.
- Two runs that need the same model train it once: the second waits on a file lock next to
  the cache (``<cache>.lock``) and reuses the first one's file. A training that was
  interrupted leaves no stale file for ever: the next run removes it.
"""

import contextlib
import fcntl
import glob
import hashlib
import json
import os
from logging import getLogger

from recbole.utils import set_color

from recbole_derrd.files.checkpoint import plain_config
from recbole_derrd.files.locks import open_lock_file
from recbole_derrd.settings.keys import learned_from


def cache_fingerprint(model_config, data_fingerprint):
    """Hash of what a model trained on demand learns from: its configuration (runtime keys
    aside) and the training split."""
    payload = json.dumps(
        {"config": learned_from(plain_config(model_config)), "split": data_fingerprint},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]


def cache_path(config, model_config, data_fingerprint, role):
    """``<checkpoint_dir>/<role>-<Model>-<dataset>-<fingerprint>.pth``, in the checkpoint
    folder of the run (``config``) that needs the model."""
    name = f"{role}-{model_config['model']}-{config['dataset']}-"
    name += cache_fingerprint(model_config, data_fingerprint) + ".pth"
    return os.path.join(config["checkpoint_dir"], name)


def teacher_cache_path(config, teacher_config, data_fingerprint):
    return cache_path(config, teacher_config, data_fingerprint, role="teacher")


def role_name(role):
    """A role as the log writes it (``student-alone``: ``student alone``)."""
    return role.replace("-", " ")


@contextlib.contextmanager
def training_lock(path, role="teacher"):
    """Hold an exclusive lock on ``<path>.lock`` (``fcntl.flock``, next to the cached model):
    two runs that need the same model trained on demand train it once, the second waits for
    the first and reuses its file. The lock is released when the process ends, however it
    ends, so a killed run never blocks the next one; the empty lock file stays."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open_lock_file(path + ".lock") as handle:  # never through a symbolic link
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            getLogger().info(
                set_color("Waiting", "yellow")
                + f" for another run that is training this {role_name(role)} ({path}.lock)"
            )
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def training_files(path):
    """The files a model being trained for ``path`` writes (``<path>.training``, or
    ``<path>-N.training``), and the temporary files of their writes."""
    folder, name = os.path.split(os.path.abspath(path))
    patterns = [glob.escape(path) + "*.training", os.path.join(glob.escape(folder), f".{glob.escape(name)}*.tmp")]
    return sorted({file for pattern in patterns for file in glob.glob(pattern)})


def remove_stale_training_files(path, role="teacher"):
    """Remove what an interrupted training of the model for ``path`` left behind; called with
    :func:`training_lock` held, so no other run is writing these files."""
    for stale in training_files(path):
        getLogger().warning(
            f"Removing {stale}, left by an interrupted training of this {role_name(role)}"
        )
        os.remove(stale)
