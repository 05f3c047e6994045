"""
recbole_derrd.settings.registry
###############################
Which models and backbones there are: the distillers registered (this plugin's, and any a
user's module registers), the backbone adapters registered, and RecBole's built-ins
(:func:`recbole_model`).

Everything the rest of the package knows about a distiller or a backbone comes from its class:
a distiller declares its loss weights, the keys that shape its parameters, its data needs and
its YAML defaults (:class:`~recbole_derrd.model.distiller.Distiller`); a backbone adapter
declares the RecBole model it serves, its size keys and its YAML defaults
(:class:`~recbole_derrd.model.backbones.Backbone`). Registering one is one line,
:func:`register_distiller` / :func:`register_backbone`, and no list of names exists elsewhere.

A module outside the package registers its distillers when it is imported: from Python,
import it; from the scripts, name it in the environment variable ``RECBOLE_DERRD_PLUGINS``
(comma-separated module names, imported before any model is looked up, as pytest's
``PYTEST_PLUGINS``).

This module imports no model: the classes register themselves when
:mod:`recbole_derrd.model` is imported (by ``import recbole_derrd``), so the package has no
import cycle.
"""

import importlib
import os

from recbole.utils import get_model as recbole_get_model

from recbole_derrd.errors import UserError

#: Environment variable naming the modules (comma-separated) that register more distillers or
#: backbones.
PLUGINS_ENVIRONMENT_VARIABLE = "RECBOLE_DERRD_PLUGINS"

_DISTILLERS = {}  # name -> distiller class, in registration order
_BACKBONES = {}  # RecBole model name -> backbone adapter class
_IMPORTED_PLUGINS = set()


class UnknownModelError(UserError, ValueError):
    """The model name is neither a model of this plugin nor a RecBole built-in."""


class PluginImportError(UserError, ImportError):
    """A module named in ``RECBOLE_DERRD_PLUGINS`` cannot be imported."""


def _register(registry, name, registered, what):
    existing = registry.get(name)
    same = existing is not None and (existing.__module__, existing.__qualname__) == (
        registered.__module__, registered.__qualname__)  # the same class, its module reloaded
    if existing is not None and not same:
        raise ValueError(f"A {what} named {name} is registered already ({existing.__module__}).")
    registry[name] = registered


def register_distiller(distiller_class):
    """Make ``distiller_class`` (a :class:`~recbole_derrd.model.distiller.Distiller`) a model
    of the plugin, by its class name. Returns the class, so it decorates one too."""
    if not getattr(distiller_class, "is_distiller", False):
        raise TypeError(f"{distiller_class!r} is not a Distiller subclass.")
    _register(_DISTILLERS, distiller_class.__name__, distiller_class, "distiller")
    return distiller_class


def register_backbone(adapter_class):
    """Make ``adapter_class`` (a :class:`~recbole_derrd.model.backbones.Backbone`) the adapter
    of the RecBole model its ``model_name`` names: that model can then be a student, and teach
    what the adapter defines. Returns the class."""
    if not isinstance(getattr(adapter_class, "model_name", None), str):
        raise TypeError(f"{adapter_class!r} names no RecBole model (model_name).")
    _register(_BACKBONES, adapter_class.model_name, adapter_class, "backbone adapter")
    return adapter_class


def load_plugins():
    """Import the modules ``RECBOLE_DERRD_PLUGINS`` names, once each."""
    for name in os.environ.get(PLUGINS_ENVIRONMENT_VARIABLE, "").split(","):
        name = name.strip()
        if not name or name in _IMPORTED_PLUGINS:
            continue
        _IMPORTED_PLUGINS.add(name)
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise PluginImportError(
                f"{PLUGINS_ENVIRONMENT_VARIABLE}: cannot import module '{name}' ({error}); is its "
                "folder on PYTHONPATH?"
            ) from None


def distillers():
    """The registered distiller classes, in registration order."""
    load_plugins()
    return list(_DISTILLERS.values())


def plugin_model_names():
    """Names of the models this plugin defines (the distillers registered)."""
    load_plugins()
    return list(_DISTILLERS)


def distiller_class(name):
    """The registered distiller named ``name``, or None."""
    if not isinstance(name, str):
        return None
    load_plugins()
    return _DISTILLERS.get(name)


def is_distiller_name(name):
    return distiller_class(name) is not None


def backbones():
    """The registered backbone adapters, in registration order."""
    load_plugins()
    return list(_BACKBONES.values())


def backbone_names():
    """The RecBole models with an adapter: the models a student can be."""
    load_plugins()
    return list(_BACKBONES)


def registered_backbone(model_name):
    """The adapter registered for the RecBole model ``model_name``, or None."""
    if not isinstance(model_name, str):
        return None
    load_plugins()
    return _BACKBONES.get(model_name)


def loss_weight_keys():
    """Every registered distiller's loss weights (its ``loss_weight_keys``), without repeats:
    the keys ``weight_search_values`` may hold candidates for."""
    return list(dict.fromkeys(key for distiller in distillers() for key in distiller.loss_weight_keys))


def parameter_keys(model_class):
    """Keys that decide the shapes of a model's parameters: ``student_model``, the size keys
    of every backbone (a distiller's student, or a baseline) and, for a distiller, its own
    ``shape_keys``. A resume with other values cannot fit."""
    keys = ["student_model"] + [key for adapter in backbones() for key in adapter.shape_keys]
    keys += list(getattr(model_class, "shape_keys", ()))
    return list(dict.fromkeys(keys))


def check_model_name(model_name):
    if not isinstance(model_name, str) or not model_name:
        raise UnknownModelError(f"A model name must be a non-empty string, got {model_name!r}.")


def recbole_model(model_name):
    r"""Return RecBole's built-in model class ``model_name``.

    Raises:
        UnknownModelError: the name is not a RecBole built-in model.
    """
    check_model_name(model_name)
    try:
        return recbole_get_model(model_name)
    except (ValueError, ImportError):
        # RecBole's lookup also imports its optional xgboost/lightgbm wrappers while
        # searching, so an unknown name can surface as ModuleNotFoundError.
        raise UnknownModelError(
            f"Unknown model '{model_name}': it is neither a recbole-derrd model "
            f"({', '.join(plugin_model_names())}) nor a RecBole built-in model."
        ) from None
