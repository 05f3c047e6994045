"""
recbole_derrd.cli
#################
How the command-line scripts (``run_scripts/*.py``) end: a user error (:class:`UserError`: a
bad key, a bad or untrusted file, a mismatched teacher, a bad resume file, missing data) is
printed as one message, ``error: ...``, and the script exits with status 2; so is what the
machine refuses about the user's files and sizes (a full disk, a read-only or missing folder
named by the error, an allocation too large: :func:`environment_error_message`). An
interrupt exits with status 130. Any other exception is a bug and keeps its full traceback
(status 1).

A traceback for user errors too: pass ``--debug`` to the script, or set the environment
variable ``RECBOLE_DERRD_DEBUG=1``.
"""

import errno
import os
import re
import sys

from recbole_derrd.errors import UserError

#: Command-line switch that shows the traceback of user errors too.
DEBUG_FLAG = "--debug"

#: Environment variable that does the same (any value but ``""`` and ``0``).
DEBUG_ENVIRONMENT_VARIABLE = "RECBOLE_DERRD_DEBUG"

#: Exit status of a user error (argparse's for bad usage); a bug exits with 1.
USER_ERROR_STATUS = 2

#: Exit status after an interrupt (128 + SIGINT), as shells report it.
INTERRUPT_STATUS = 130


#: What the machine refuses about a file the user named or a folder a run writes to: not a bug.
ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM,
                      errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP)

#: How torch and NumPy say that an allocation failed.
OUT_OF_MEMORY = ("can't allocate memory", "out of memory", "unable to allocate", "not enough memory")


def environment_error_message(error):
    """The one-line message of an error the machine raised against the user's settings (a file
    that cannot be written or read for a reason the user can fix, an allocation the sizes make
    too large, a value float32 cannot hold), or None for anything else (a bug: its traceback is
    shown)."""
    if isinstance(error, OSError) and not isinstance(error, UserError):
        if error.errno in ENVIRONMENT_ERRNOS and error.filename is not None:
            return f"{error.strerror}: '{error.filename}'"
        return None
    text = str(error).strip()
    if isinstance(error, RuntimeError) and "without overflow" in text:
        return (f"a setting is too large for the model's float32 arithmetic ({text}): lower "
                "learning_rate, weight_decay or the loss weights")
    if isinstance(error, MemoryError) or any(sign in text.lower() for sign in OUT_OF_MEMORY):
        attempt = re.search(r"tried to allocate [^.(]*", text)
        what = attempt.group(0).strip() if attempt else (text.splitlines()[0] if text else "")
        return (f"not enough memory{f' ({what})' if what else ''}: lower the sizes "
                "(embedding_size, the batch sizes, the teacher's size or rrd_topn)")
    return None


def debug_requested(argv=None):
    """Whether the user asked for tracebacks (``--debug`` or ``RECBOLE_DERRD_DEBUG``)."""
    argv = sys.argv if argv is None else argv
    environment = os.environ.get(DEBUG_ENVIRONMENT_VARIABLE, "").strip()
    return DEBUG_FLAG in argv[1:] or environment not in ("", "0")


def run_main(main, *args, **kwargs):
    r"""Call ``main(*args, **kwargs)`` as a script's entry point and exit as described above.

    ``--debug`` is removed from ``sys.argv`` first: RecBole's ``Config`` reads ``sys.argv``
    and would warn about an unknown argument.

    Returns:
        the value of ``main``, when it returns.
    """
    debug = debug_requested()
    sys.argv = [sys.argv[0]] + [arg for arg in sys.argv[1:] if arg != DEBUG_FLAG]
    try:
        return main(*args, **kwargs)
    except UserError as error:
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(USER_ERROR_STATUS)
    except (OSError, MemoryError, RuntimeError) as error:
        message = environment_error_message(error)
        if message is None or debug:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(USER_ERROR_STATUS)
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        sys.exit(INTERRUPT_STATUS)
