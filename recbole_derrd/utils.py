"""
recbole_derrd.utils
###################
Plugin-first model and trainer lookup (the RecBole-GNN pattern): a name is first looked up
among the distillers registered (:mod:`recbole_derrd.settings.registry`; their classes declare
their trainers), then among RecBole's built-ins.
"""

import importlib

from recbole.utils import get_trainer as recbole_get_trainer

from recbole_derrd.pipeline.distributed import DistributedTrainerBase
from recbole_derrd.settings.registry import (  # noqa: F401 (UnknownModelError, plugin_model_names: API)
    UnknownModelError,
    check_model_name,
    distiller_class,
    plugin_model_names,
    recbole_model,
)
from recbole_derrd.trainer import SafeCheckpointMixin


def get_model(model_name):
    r"""Return the model class for ``model_name``: the distillers registered first, then
    RecBole's models. The plugin's own distillers are imported here (lazily: the configurator
    uses this lookup, and the models use the configurator's modules), and so register.

    Raises:
        UnknownModelError: the name is not a model of either.
    """
    check_model_name(model_name)
    importlib.import_module("recbole_derrd.model")
    distiller = distiller_class(model_name)
    return distiller if distiller is not None else recbole_model(model_name)


_SAFE_TRAINERS = {}


def safe_trainer_class(trainer_class):
    """``trainer_class`` with checkpoints that load with ``torch.load(weights_only=True)``,
    resume files, and a multi-process wrap that works on the CPU too
    (:class:`~recbole_derrd.pipeline.distributed.DistributedTrainerBase`, beneath the trainer)."""
    if issubclass(trainer_class, SafeCheckpointMixin):
        return trainer_class
    if trainer_class not in _SAFE_TRAINERS:
        _SAFE_TRAINERS[trainer_class] = type(
            trainer_class.__name__,
            (SafeCheckpointMixin, trainer_class, DistributedTrainerBase),
            {},
        )
    return _SAFE_TRAINERS[trainer_class]


def get_trainer(model_type, model_name):
    r"""Return the trainer class for a model: the one a model of this plugin declares
    (``trainer_class``), else RecBole's choice. Every trainer returned writes and reads
    checkpoints that load with ``weights_only=True`` (RecBole's own pickle a Config object,
    which torch >= 2.6 refuses).
    """
    trainer_class = None
    if distiller_class(model_name) is not None:
        trainer_class = get_model(model_name).trainer_class
    if trainer_class is None:
        trainer_class = recbole_get_trainer(model_type, model_name)
    return safe_trainer_class(trainer_class)
