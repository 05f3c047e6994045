"""
recbole_derrd.errors
####################
The plugin's error types that describe a problem the user can fix (a setting, a file, the
data), as opposed to a bug.

Every such error derives from :class:`UserError`. The command-line scripts
(:mod:`recbole_derrd.cli`) print a :class:`UserError` as one message and exit with a non-zero
status; any other exception is a bug and keeps its traceback. The concrete types also derive
from the built-in exception that fits them (``ValueError``, ``FileNotFoundError``), so code
that caught those before still does.
"""


class UserError(Exception):
    """A problem of the user's settings, files or data: the message says what is wrong, which
    key or file, and what to do."""


class CheckpointError(UserError, ValueError):
    """A checkpoint (or another file the plugin reads) is missing, unreadable or unsuitable."""


class UntrustedCheckpointError(CheckpointError):
    """A file needs arbitrary unpickling (which runs whatever code it contains) and the user
    did not opt in with ``trust_checkpoint``."""
