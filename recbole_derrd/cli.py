"""
recbole_derrd.cli
#################
How the command-line scripts (``run_scripts/*.py``) end: a user error (:class:`UserError`: a
bad key, a bad or untrusted file, a mismatched teacher, a bad resume file, missing data) is
printed as one message, ``error: ...``, and the script exits with status 2; an interrupt
exits with status 130. Any other exception is a bug and keeps its full traceback (status 1).

A traceback for user errors too: pass ``--debug`` to the script, or set the environment
variable ``RECBOLE_DERRD_DEBUG=1``.
"""

import os
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
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        sys.exit(INTERRUPT_STATUS)
