"""
recbole_derrd.settings.user_input
#################################
What the user gives RecBole to read (the command line, configuration files, values, data),
read so that a mistake in it is one message naming the thing, never a traceback from inside
RecBole, and never silently ignored.

- :func:`check_command_line`: every ``--`` argument RecBole would read is ``--key=value``
  (RecBole ignores others with a warning: ``--epochs 2`` would train the default epochs; an
  argument without ``--`` is no key, and ignored as RecBole does) and no key is given twice
  with different values (a ``SyntaxError`` in RecBole).
- :func:`read_config_files`: each ``--config_files`` file exists, is UTF-8 YAML (line and
  column of a syntax error named), holds a mapping of keys, and uses no Python tag (RecBole
  reads the files with PyYAML's ``FullLoader``, which builds Python objects from
  ``!!python/name`` tags).
- :func:`read_by_recbole`: an error that RecBole (or the libraries it calls) raises while it
  reads the user's configuration or data becomes a :class:`RecBoleInputError` naming what was
  being read; an error raised in the plugin's own code is a bug and keeps its traceback.
"""

import contextlib
import os
import re

import yaml

from recbole_derrd.errors import UserError


class CommandLineError(UserError, ValueError):
    """A command-line argument RecBole would misread or ignore."""


class ConfigFileError(UserError, ValueError):
    """A ``--config_files`` file cannot be read as a YAML mapping of keys."""


class RecBoleInputError(UserError, ValueError):
    """RecBole cannot use a value or file the user gave."""


#: Flags of the plugin's scripts read by their own argument parser (not RecBole's keys), which
#: argparse also accepts as ``--flag value``.
SCRIPT_FLAGS = ("model", "dataset", "config_files", "resume", "nproc", "world_size", "ip", "port",
                "group_offset", "params_file", "output_file", "algo", "max_evals", "output")

#: Their short forms.
SHORT_FLAGS = ("-m", "-d", "-o")


def check_command_line(argv):
    """Refuse what RecBole's command-line reader would ignore (a ``--`` argument that is not
    ``--key=value``) or fail on (a key given twice with different values).

    Args:
        argv (list of str): ``sys.argv``.

    Raises:
        CommandLineError: naming the argument and the fix.
    """
    if argv and "ipykernel_launcher" in argv[0]:
        return  # RecBole reads no command line in a notebook
    given = {}
    arguments = list(argv[1:])
    index = 0
    while index < len(arguments):
        argument = arguments[index]
        index += 1
        if argument in SHORT_FLAGS or argument[2:] in SCRIPT_FLAGS and argument.startswith("--"):
            index += 1  # '--flag value': both read by the script's own parser
            continue
        if not argument.startswith("--"):
            continue  # not a key (RecBole warns that it ignores it)
        key, separator, value = argument[2:].partition("=")
        if not separator or not key:
            raise CommandLineError(
                f"Command-line argument {argument!r} is not of the form --key=value (write "
                f"--{argument[2:] or 'key'}=<value>): RecBole would ignore it."
            )
        if "=" in value:
            raise CommandLineError(
                f"Command-line argument {argument!r}: a value that contains '=' is dropped by "
                "RecBole's command-line reader; put this key in a YAML file (--config_files)."
            )
        if key in given and given[key] != value:
            raise CommandLineError(
                f"--{key} is given twice with different values ({given[key]!r}, {value!r}): "
                "give it once."
            )
        given[key] = value


def recbole_yaml_loader():
    """PyYAML's safe loader with RecBole's reading of floats (``1e-3`` is a float): what a
    configuration file may hold (RecBole's own loader is ``FullLoader``, which also builds
    Python objects)."""

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(
            r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
            |\.[0-9_]+(?:[eE][-+][0-9]+)?
            |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
            |[-+]?\.(?:inf|Inf|INF)
            |\.(?:nan|NaN|NAN))$""",
            re.X,
        ),
        list("-+0123456789."),
    )
    return Loader


def read_config_file(path):
    """The mapping a configuration file holds ({} for an empty file).

    Raises:
        ConfigFileError: missing, not a file, not UTF-8, not YAML, a Python tag, not a mapping.
    """
    if not os.path.isfile(path):
        problem = "is a folder" if os.path.isdir(path) else "does not exist"
        raise ConfigFileError(f"Configuration file '{path}' {problem}.")
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigFileError(f"Configuration file '{path}' is not UTF-8 text ({error.reason} at "
                              f"byte {error.start}).") from None
    except OSError as error:
        raise ConfigFileError(f"Cannot read configuration file '{path}': {error.strerror}.") from None
    try:
        content = yaml.load(text, Loader=recbole_yaml_loader())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        if "could not determine a constructor for the tag" in str(problem):
            problem += " (configuration files hold plain values: no Python objects)"
        raise ConfigFileError(f"Configuration file '{path}'{where}: {problem}.") from None
    if content is None:
        return {}
    if not isinstance(content, dict) or not all(isinstance(key, str) for key in content):
        raise ConfigFileError(
            f"Configuration file '{path}' must hold a mapping of keys to values ('key: value' "
            f"lines), not a {type(content).__name__}."
        )
    return content


def read_config_files(paths):
    """``{path: mapping}`` of every configuration file (:func:`read_config_file`)."""
    return {path: read_config_file(path) for path in paths or []}


#: The plugin's own code: an error raised here is a bug, never the user's input.
PLUGIN_DIRECTORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep

#: Errors RecBole and the libraries it calls raise on a value or a file they cannot use.
INPUT_ERRORS = (ValueError, TypeError, KeyError, IndexError, NotImplementedError, RuntimeError,
                SyntaxError, AttributeError, AssertionError, ZeroDivisionError, yaml.YAMLError)


def raised_by_plugin(error):
    """Whether ``error`` was raised in the plugin's own code (its innermost frame)."""
    traceback = error.__traceback__
    while traceback is not None and traceback.tb_next is not None:
        traceback = traceback.tb_next
    filename = traceback.tb_frame.f_code.co_filename if traceback is not None else ""
    return os.path.abspath(filename).startswith(PLUGIN_DIRECTORY)


def describe(error):
    """An error as one line: its type and the first line of its message."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, KeyError) and message:
        message = f"no {message}"
    return f"{message} ({type(error).__name__})" if message else type(error).__name__


@contextlib.contextmanager
def read_by_recbole(what):
    """Turn an error RecBole raises while it reads ``what`` (the configuration, a dataset) into
    a :class:`RecBoleInputError` naming it; the plugin's own errors pass unchanged."""
    try:
        yield
    except UserError:
        raise
    except INPUT_ERRORS as error:
        if raised_by_plugin(error):
            raise
        raise RecBoleInputError(f"RecBole cannot use {what}: {describe(error)}.") from error
