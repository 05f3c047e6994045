"""recbole-derrd: DE-RRD knowledge distillation (Kang et al., CIKM 2020) as a RecBole plugin."""

__version__ = "0.1.0"

from recbole_derrd.config import Config
from recbole_derrd.model import CD, DERRD, HTD, RD, UnKD
from recbole_derrd.quick_start import load_data_and_model, objective_function, run, run_recbole_derrd
from recbole_derrd.settings.registry import register_backbone, register_distiller
from recbole_derrd.trainer import DERRDTrainer, DistillationTrainer
from recbole_derrd.utils import get_model, get_trainer

__all__ = [
    "CD",
    "Config",
    "DERRD",
    "DERRDTrainer",
    "DistillationTrainer",
    "get_model",
    "get_trainer",
    "HTD",
    "load_data_and_model",
    "objective_function",
    "RD",
    "register_backbone",
    "register_distiller",
    "run",
    "run_recbole_derrd",
    "UnKD",
]
