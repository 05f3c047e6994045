"""
recbole_derrd.teacher_cache
###########################
Where an on-demand teacher is cached, and how two runs share it. The teacher is trained by a
run whose ``teacher_checkpoint`` is unset, before its student is built
(:func:`recbole_derrd.pipeline.prepare_teacher`), never by a model: a model is handed its
teacher, or loads the one ``teacher_checkpoint`` names (:mod:`recbole_derrd.teacher`).

- The teacher (``teacher_model``, ``teacher_embedding_size``, ``teacher_config``) is saved as
  ``<checkpoint_dir>/teacher-<Model>-<dataset>-<fingerprint>.pth``. The fingerprint hashes the
  teacher's configuration and the training split, so a later run with the same data and
  teacher settings reuses the file, and any change trains (and saves) a new one.
- Two runs that need the same on-demand teacher train it once: the second waits on a file
  lock next to the cache (``<cache>.lock``) and reuses the first one's file. A training that
  was interrupted leaves no stale file for ever: the next run removes it.
"""

import contextlib
import fcntl
import glob
import hashlib
import json
import os
from logging import getLogger

from recbole.utils import set_color

from recbole_derrd.checkpoint import plain_config
from recbole_derrd.keys import learned_from


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
