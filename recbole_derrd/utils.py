"""
recbole_derrd.utils
###################
Plugin-first model and trainer lookup (the RecBole-GNN pattern): a name is first looked up
among this plugin's models (whose classes declare their trainers), then among RecBole's
built-ins.
"""

import importlib

from recbole.utils import get_trainer as recbole_get_trainer

from recbole_derrd.distributed import DistributedTrainerBase
from recbole_derrd.registry import (  # noqa: F401 (UnknownModelError, plugin_model_names: API)
    PLUGIN_MODELS,
    UnknownModelError,
    check_model_name,
    plugin_model_names,
    recbole_model,
)
from recbole_derrd.trainer import SafeCheckpointMixin


def get_model(model_name):
    r"""Return the model class for ``model_name``: this plugin's models first, then RecBole's.
    The one place that imports the plugin's model classes (lazily: the configurator uses this
    lookup, and the models use the configurator's modules).

    Raises:
        UnknownModelError: the name is not a model of either.
    """
    check_model_name(model_name)
    if model_name in PLUGIN_MODELS:
        plugin_models = importlib.import_module("recbole_derrd.model")
        return getattr(plugin_models, model_name)
    return recbole_model(model_name)


_SAFE_TRAINERS = {}


def safe_trainer_class(trainer_class):
    """``trainer_class`` with checkpoints that load with ``torch.load(weights_only=True)``,
    resume files, and a multi-process wrap that works on the CPU too
    (:class:`~recbole_derrd.distributed.DistributedTrainerBase`, beneath the trainer)."""
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
    if model_name in PLUGIN_MODELS:
        trainer_class = get_model(model_name).trainer_class
    if trainer_class is None:
        trainer_class = recbole_get_trainer(model_type, model_name)
    return safe_trainer_class(trainer_class)


def device_label(device):
    """A report's file name for ``device``: ``cpu``, or ``cuda-`` and the GPU's model (two GPU
    models never share a report)."""
    import re

    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return device.type
    return "cuda-" + re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def machine_info(device):
    """What a timing was measured on: CPU model, cores, torch and its CPU threads, the device."""
    import os
    import platform

    import torch

    info = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "python": platform.python_version(),
    }
    try:
        with open("/proc/cpuinfo") as handle:
            cpuinfo = handle.read().splitlines()
        names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
        info["cpu"] = names[0] if names else info["cpu"]
        flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
        # what decides float speed: AVX-512 and AMX (Intel), and so how costly subnormals are
        info["cpu_flags"] = [flag for flag in ("avx2", "avx512f", "amx_tile") if flag in flags]
    except OSError:
        pass
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info
