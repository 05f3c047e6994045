"""
recbole_derrd.settings.known_keys
#################################
The configuration keys RecBole or the plugin knows, so that a misspelt key is refused with the
nearest known one ("did you mean lambda_rrd?") instead of being silently ignored.

A key is known when it is a top-level key of one of RecBole's YAML files (general, model,
dataset and quick-start defaults) or the plugin's (:mod:`recbole_derrd.properties`), one of
RecBole's argument lists, a key that RecBole's or the plugin's code reads from a configuration
(``config["key"]``, ``config.get("key")``, ``"key" in config``), a key the run derives
(:data:`~recbole_derrd.settings.keys.DERIVED_KEYS`), or a flag of the plugin's scripts. Both
packages are scanned once per process (about a tenth of a second).

Keys of a user's own model (which neither package knows) are accepted when listed in
``custom_keys`` (e.g. ``custom_keys: [my_layers, my_dropout]``).
"""

import difflib
import functools
import os
import re

import recbole
from recbole.utils.argument_list import dataset_arguments, evaluation_arguments, general_arguments, training_arguments

from recbole_derrd.settings.keys import DERIVED_KEYS
from recbole_derrd.settings.user_input import SCRIPT_FLAGS

#: The key that lists the keys of a user's own model (the escape hatch).
CUSTOM_KEYS = "custom_keys"

#: ``key:`` at the start of a YAML line: a top-level key.
TOP_LEVEL_KEY = re.compile(r"^([A-Za-z_][\w\-]*)\s*:", re.M)

#: ``config["key"]``, ``config.get("key"``, ``"key" in config``.
KEY_READ = re.compile(
    r"""config\w*\[\s*["']([A-Za-z_]\w*)["']\s*\]"""
    r"""|config\w*\.get\(\s*["']([A-Za-z_]\w*)["']"""
    r"""|["']([A-Za-z_]\w*)["']\s+(?:not\s+)?in\s+(?:self\.)?config\w*\b"""
)


def _package_keys(directory):
    keys = set()
    for folder, _, names in os.walk(directory):
        for name in names:
            if not name.endswith((".yaml", ".py")):
                continue
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                text = handle.read()
            if name.endswith(".yaml"):
                keys.update(TOP_LEVEL_KEY.findall(text))
            else:
                keys.update(key for match in KEY_READ.findall(text) for key in match if key)
    return keys


@functools.lru_cache(maxsize=1)
def known_keys():
    """Every configuration key RecBole or the plugin knows (a frozen set)."""
    plugin = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    keys = _package_keys(os.path.dirname(recbole.__file__)) | _package_keys(plugin)
    keys.update(general_arguments, training_arguments, evaluation_arguments, dataset_arguments)
    keys.update(DERIVED_KEYS, SCRIPT_FLAGS, [CUSTOM_KEYS])
    return frozenset(keys)


def custom_keys(values):
    """The keys listed in ``custom_keys`` (a list of names, or one name)."""
    if values is None:
        return set()
    if isinstance(values, str):
        return {values}
    if isinstance(values, (list, tuple)) and all(isinstance(value, str) for value in values):
        return set(values)
    return None  # reported by unknown_key_problems


def nearest_key(key):
    """The known key nearest to ``key``, or None."""
    matches = difflib.get_close_matches(key, sorted(known_keys()), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_key_problems(sources, declared=None):
    """One problem per unknown key.

    Args:
        sources (dict): ``{where the keys were read: keys}``, e.g. ``{"the command line":
            [...], "config file 'a.yaml'": [...]}``.
        declared: the ``custom_keys`` value.

    Returns:
        list of str
    """
    extra = custom_keys(declared)
    if extra is None:
        return [f"{CUSTOM_KEYS} must be a list of key names, got {declared!r}"]
    problems = []
    known = known_keys() | extra
    for where, keys in sources.items():
        for key in keys:
            if not isinstance(key, str) or key in known:
                continue
            nearest = nearest_key(key)
            hint = f"did you mean {nearest}?" if nearest else "no known key is near it"
            problems.append(
                f"unknown key {key!r} ({where}; {hint} A key of your own model: list it in "
                f"{CUSTOM_KEYS})"
            )
    return problems


def config_key_sources(config):
    """The keys the user gave a :class:`recbole_derrd.config.Config`, by where they were read:
    the command line and the configuration files always, the ``config_dict`` of a configuration
    built for the user (not one rebuilt from a checkpoint, or built inside a run)."""
    sources = {"on the command line": list(config.cmd_config_dict)}
    for path, content in getattr(config, "config_file_contents", {}).items():
        sources[f"in config file '{path}'"] = list(content)
    if config.parse_command_line:
        sources["in config_dict"] = list(config.variable_config_dict)
    return sources
