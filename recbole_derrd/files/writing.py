"""
recbole_derrd.files.writing
###########################
How the plugin writes a file: atomically (a temporary file in the same folder, flushed to disk,
then renamed or linked into place: the previous complete file or none, never a partial one),
under a new name where one is asked for (the next free ``<stem>-N<ext>``: every search for a
free name is bounded and takes any directory entry, a dangling link too, as taken), and with a
failed write (a full disk, a read-only folder) reported as one message naming the file.
"""

import errno
import os
import tempfile

from recbole_derrd.errors import CheckpointError, UserError


def _new_file_mode():
    """The permissions ``open`` gives a new file: 0666 less the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


class FileWriteError(UserError, OSError):
    """A file cannot be written (a full disk, a read-only folder...); nothing was written
    under its name. Built as ``FileWriteError(errno, message)``."""

    def __str__(self):
        return self.strerror


def file_write_error(path, error):
    """The :class:`FileWriteError` of an ``OSError`` met while writing ``path``."""
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        reason += " (free some space, or write elsewhere)"
    return FileWriteError(
        error.errno, f"Cannot write '{path}': {reason}; nothing was written under that name."
    )


def check_folder_writable(path):
    """Refuse, before any work, a file whose folder cannot be created or written (a file where
    a folder should be, no permission): a long search or training would lose its result.

    Raises:
        FileWriteError
    """
    folder = os.path.dirname(os.path.abspath(path))
    existing = folder
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise FileWriteError(errno.ENOTDIR, f"Cannot write '{path}': '{existing}' is a file, not "
                                            "a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FileWriteError(errno.EACCES, f"Cannot write '{path}': '{existing}' cannot be "
                                           "written by this user.")


class _RecordingStream:
    """A binary stream that remembers the ``OSError`` its writes met: ``torch.save`` reports
    a failed write as its own ``RuntimeError``, which would hide a full disk."""

    def __init__(self, stream):
        self.stream, self.error = stream, None

    def write(self, data):
        try:
            return self.stream.write(data)
        except OSError as error:
            self.error = error
            raise

    def __getattr__(self, name):
        return getattr(self.stream, name)


def atomic_write(path, write, exclusive=False):
    """Write a file atomically: ``write(stream)`` fills a temporary file in the same folder,
    which is flushed to disk, then renamed into place, so an interrupt or crash at any moment
    leaves the previous complete file at ``path`` (or none), never a partial one, and no
    temporary file (short of a hard kill, which can leave a hidden ``.<name>.*.tmp``).

    Args:
        write (callable): writes the content to a binary stream.
        exclusive (bool): never replace an existing file (raise ``FileExistsError``): the
            file is linked into place, which fails atomically when ``path`` exists.

    Raises:
        FileWriteError: the folder or the file cannot be written (full disk, permissions...).
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
        )
    except OSError as error:
        raise file_write_error(path, error) from None
    try:
        stream = _RecordingStream(os.fdopen(handle, "wb"))
        try:
            with stream.stream:  # closing flushes too: a full disk can fail there
                write(stream)
                stream.flush()
                os.fsync(stream.fileno())
        except Exception as error:
            failed = stream.error or (error if isinstance(error, OSError) else None)
            if failed is None:
                raise
            raise file_write_error(path, failed) from None
        os.chmod(temporary, _new_file_mode())  # mkstemp's files are private (0600)
        try:
            if exclusive:
                os.link(temporary, path)  # FileExistsError if taken, never a replacement
            else:
                os.replace(temporary, path)
        except FileExistsError:
            raise
        except OSError as error:
            raise file_write_error(path, error) from None
    finally:
        if os.path.lexists(temporary):
            os.remove(temporary)


#: Most names a search for a free file name tries (``path``, then ``<stem>-1<ext>`` ...) before
#: it gives up: every such search ends, whatever the folder holds.
MAX_NAME_TRIES = 10_000


class NoFreeNameError(CheckpointError, FileExistsError):
    """Every name a search for a free file name tried is taken."""


def candidate_names(path):
    """``path``, then ``<stem>-1<ext>``, ``<stem>-2<ext>``...: :data:`MAX_NAME_TRIES` names
    in all."""
    stem, extension = os.path.splitext(path)
    yield path
    for index in range(1, MAX_NAME_TRIES):
        yield f"{stem}-{index}{extension}"


def no_free_name(path):
    return NoFreeNameError(
        f"No free file name for '{path}': it and the next {MAX_NAME_TRIES - 1} numbered names "
        f"('<name>-N') are taken in {os.path.dirname(os.path.abspath(path))}; move files away "
        "or choose another name."
    )


def unique_path(path, companion=None):
    """``path`` itself if free, else ``<stem>-1<ext>``, ``<stem>-2<ext>``...: never overwrite.
    A name is taken by any directory entry (a dangling symbolic link too).

    Args:
        companion (callable): maps a candidate to another file written with it (a best-model
            file's resume file); a candidate is free only if its companion is free too.

    Raises:
        NoFreeNameError: :data:`MAX_NAME_TRIES` names tried, all taken.
    """
    for candidate in candidate_names(path):
        if not os.path.lexists(candidate) and (
            companion is None or not os.path.lexists(companion(candidate))
        ):
            return candidate
    raise no_free_name(path)


def write_new_file(path, write, written=None, companion=None):
    """Write a new file atomically (:func:`atomic_write`, ``write(stream)`` fills it) at
    ``path`` or, where that name is taken, the next free ``<stem>-N<ext>``; never replaces a
    file (or a link). Returns the name chosen.

    Args:
        written (callable): maps a candidate name to the file written for it (a best-model
            name to its resume file); default: the candidate itself.
        companion (callable): as in :func:`unique_path`: a candidate is free only if its
            companion is free too.

    Raises:
        NoFreeNameError: no free name among :data:`MAX_NAME_TRIES`.
    """
    for candidate in candidate_names(path):
        target = written(candidate) if written else candidate
        if os.path.lexists(target) or (companion and os.path.lexists(companion(candidate))):
            continue
        try:
            atomic_write(target, write, exclusive=True)
            return candidate
        except FileExistsError:
            continue  # taken in between by another writer
    raise no_free_name(path)
