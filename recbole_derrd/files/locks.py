"""
recbole_derrd.files.locks
#########################
File locks (``fcntl.flock``) of the plugin: who may write a run's files.

- :func:`open_lock_file` opens (or creates) a lock file without following a symbolic link: a
  planted or dangling ``<file>.lock`` link never makes a run create or lock a file elsewhere.
- :func:`hold_run_files` takes a run's files (its best-model and resume files) exclusively,
  with a lock on ``<best model>.lock``: a run holds it while it trains (from the moment it
  claims its files), and a resumed run for the whole run, from before any work. A second run
  that would write the same files (a second ``--resume`` of the same run, or a resume of a run
  still training) is refused at once with one message, instead of sharing the files and
  losing one run's model. The lock is released however the process ends (a killed run never
  blocks the next one), and its file removed when the run releases it.
"""

import errno
import fcntl
import functools
import inspect
import os
import stat
import threading

from recbole_derrd.errors import UserError


class LockFileError(UserError, OSError):
    """A lock file cannot be opened (a symbolic link or not a file where it should be, a
    folder that cannot be written)."""


class RunFilesInUseError(UserError, RuntimeError):
    """Another run is writing the files this run would write."""


def open_lock_file(path):
    """Open ``path`` for locking, creating it if needed, without following a symbolic link.

    Returns:
        a binary file object (its descriptor is what ``fcntl.flock`` locks).

    Raises:
        LockFileError: ``path`` is a symbolic link or not a regular file, or cannot be created.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        descriptor = os.open(path, flags, 0o666)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise LockFileError(
                f"Lock file '{path}' is a symbolic link: the plugin never follows one there. "
                "Remove the link (no run is using it) and start again."
            ) from None
        raise LockFileError(f"Cannot open lock file '{path}': {error.strerror}.") from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):  # a FIFO or a device opens, but is no file
        os.close(descriptor)
        raise LockFileError(f"Lock file '{path}' is not a regular file; remove it and start again.")
    return os.fdopen(descriptor, "r+b")


def run_lock_path(model_file):
    """The lock file of a run whose best-model file is ``model_file``: ``<model_file>.lock``,
    in the folder's real path (a folder reached through a link is the same folder)."""
    folder, name = os.path.split(os.path.abspath(model_file))
    return os.path.join(os.path.realpath(folder), f"{name}.lock")


#: Locks this process holds, by lock file: ``[handle, holders]``. A process takes the lock of
#: a run's files once, however many parts of it (the run function, the trainer) hold it.
_held = {}
_held_guard = threading.Lock()


def _same_file(handle, path):
    """Whether ``path`` still names the file ``handle`` has open (another run may have removed
    the lock file, and a third created a new one, between our open and our lock)."""
    try:
        return os.stat(path, follow_symlinks=False).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False


def _acquire(path, holder_hint):
    for _ in range(100):  # a removed-and-recreated lock file is retried, a bounded number of times
        handle = open_lock_file(path)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RunFilesInUseError(
                f"{holder_hint} are being written by another run (it holds '{path}'): two runs "
                "never share files. Wait for it to end, or start a new run."
            ) from None
        if _same_file(handle, path):
            return handle
        handle.close()
    raise RunFilesInUseError(f"Cannot take the lock '{path}': other runs keep replacing it.")


def acquire_run_files(model_file):
    """Take the files of the run whose best-model file is ``model_file`` (and its resume file)
    exclusively; :func:`release_run_files` gives them back. Re-entrant within a process.

    Raises:
        RunFilesInUseError: another process holds them.
        LockFileError: the lock file cannot be opened.
    """
    path = run_lock_path(model_file)
    with _held_guard:
        if path in _held:
            _held[path][1] += 1
            return path
        hint = f"'{model_file}' and its resume file"
        _held[path] = [_acquire(path, hint), 1]
        return path


def release_run_files(model_file):
    """Give back what :func:`acquire_run_files` took; the last holder of this process removes
    the lock file (while still holding it) and releases the lock."""
    path = run_lock_path(model_file)
    with _held_guard:
        if path not in _held:
            return
        _held[path][1] -= 1
        if _held[path][1] > 0:
            return
        handle, _ = _held.pop(path)
        try:
            if _same_file(handle, path):
                os.remove(path)
        except OSError:
            pass  # left behind: harmless, the next run locks it again
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


class hold_run_files:
    """``with hold_run_files(model_file):`` the run's files held for the block
    (:func:`acquire_run_files` / :func:`release_run_files`)."""

    def __init__(self, model_file):
        self.model_file = model_file

    def __enter__(self):
        acquire_run_files(self.model_file)
        return self

    def __exit__(self, *exc_info):
        release_run_files(self.model_file)
        return False


def resumed_model_file(resume):
    """The best-model file of the run that ``resume`` (a resume file, or the best-model file it
    sits beside) continues; None where ``resume`` is no resume file (the run reports it)."""
    from recbole_derrd.files.checkpoint import CheckpointError, best_model_path, resume_path

    resume = str(resume)
    if os.path.isfile(resume_path(resume)):
        return resume
    if not os.path.isfile(resume):
        return None
    try:
        return best_model_path(resume)
    except CheckpointError:
        return None  # not a resume file's name: the run reports what the file is


def holds_resumed_run_files(run_function):
    """Decorator of a run function with a ``resume`` argument: a resumed run holds the
    interrupted run's files for the whole call, taken before any work, and a second run
    resuming them at the same time is refused. The processes a multi-process run spawns (their
    ``config_dict`` has ``local_rank``) leave it to their launcher, which holds it."""
    signature = inspect.signature(run_function)

    @functools.wraps(run_function)
    def run_holding_files(*args, **kwargs):
        arguments = signature.bind(*args, **kwargs).arguments
        resume = arguments.get("resume")
        spawned = "local_rank" in (arguments.get("config_dict") or {})
        model_file = None if resume is None or spawned else resumed_model_file(resume)
        if model_file is None:
            return run_function(*args, **kwargs)
        with hold_run_files(model_file):
            return run_function(*args, **kwargs)

    return run_holding_files
