"""
recbole_derrd.settings.search_space
###################################
The search space of ``run_scripts/run_hyper.py``: RecBole's parameter file format, one line per
key, ``<key> choice [v1,v2,...]``, ``<key> uniform low,high``, ``<key> quniform low,high,q`` or
``<key> loguniform low,high`` (blank lines and ``#`` comments are skipped).

RecBole's own reader ``eval``\\ s the ``choice`` values (a file could run code), fails with a
traceback on a missing file or a malformed line, and skips a line with fewer than three words
silently. Here the values are read as literals only (:func:`ast.literal_eval`), and every
problem is one message naming the file and the line. The result is the ``params_dict`` that
RecBole's ``HyperTuning`` takes.
"""

import ast
import math

from recbole_derrd.errors import UserError

#: Range types and how many numbers each takes.
RANGES = {"uniform": 2, "quniform": 3, "loguniform": 2}


class SearchSpaceError(UserError, ValueError):
    """The parameter file of a hyperparameter search cannot be read."""


def read_params_file(path):
    """``{type: {key: values}}`` from a parameter file (``HyperTuning``'s ``params_dict``).

    Raises:
        SearchSpaceError: missing, unreadable or malformed (file and line named), or empty.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise SearchSpaceError(f"Cannot read the parameter file '{path}': {reason}.") from None
    space = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, kind, values = read_line(path, number, line)
        if any(key in keys for keys in space.values()):
            raise SearchSpaceError(f"Parameter file '{path}', line {number}: {key} is given twice.")
        space.setdefault(kind, {})[key] = values
    if not space:
        raise SearchSpaceError(f"Parameter file '{path}' holds no parameter to search.")
    return space


def read_line(path, number, line):
    """``(key, type, values)`` of one line."""

    def fail(problem):
        raise SearchSpaceError(
            f"Parameter file '{path}', line {number}: {problem}. A line is '<key> choice [v1,v2]' "
            "or '<key> uniform|loguniform low,high' or '<key> quniform low,high,q'."
        )

    words = line.split()
    if len(words) < 3:
        fail(f"{line.strip()!r} has no values")
    key, kind, text = words[0], words[1], "".join(words[2:])
    if kind == "choice":
        try:
            values = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            fail(f"the choices {text!r} are not a list of values")
        if not isinstance(values, list) or not values:
            fail(f"the choices {text!r} are not a non-empty list")
        return key, kind, values
    if kind not in RANGES:
        fail(f"unknown type {kind!r} (choice, {', '.join(RANGES)})")
    try:
        bounds = [float(part) for part in text.split(",")]
    except ValueError:
        fail(f"{text!r} are not numbers")
    if len(bounds) != RANGES[kind] or not all(math.isfinite(bound) for bound in bounds) \
            or bounds[0] > bounds[1]:
        fail(f"{kind} takes {RANGES[kind]} finite numbers, low <= high; got {text!r}")
    return key, kind, bounds
