"""
recbole_derrd.settings.registry
###############################
Model names: this plugin's models (:data:`PLUGIN_MODELS`) and RecBole's built-ins
(:func:`recbole_model`).

The plugin's model classes themselves are looked up in one place,
:func:`recbole_derrd.utils.get_model` (plugin-first, the RecBole-GNN pattern), which imports them
lazily. The modules the models use (teacher loading, validation) need RecBole's built-in models
only, and this module, which imports no model: so the package has no import cycle.
"""

from recbole.utils import get_model as recbole_get_model

from recbole_derrd.errors import UserError

#: Names of the models this plugin defines (the distillers), as exported by
#: :mod:`recbole_derrd.model`.
PLUGIN_MODELS = ("DERRD", "RD", "CD", "UnKD", "HTD")


class UnknownModelError(UserError, ValueError):
    """The model name is neither a model of this plugin nor a RecBole built-in."""


def plugin_model_names():
    """Names of the models this plugin defines (the distillers)."""
    return list(PLUGIN_MODELS)


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
