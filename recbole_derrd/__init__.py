"""recbole-derrd: DE-RRD knowledge distillation (Kang et al., CIKM 2020) as a RecBole plugin."""

__version__ = "0.1.0"

# before anything imports RecBole: what it needs from numpy 2 / scipy >= 1.13 (only if missing)
from recbole_derrd import compat

compat.apply()

try:
    import recbole  # noqa: F401
except ModuleNotFoundError as error:
    if error.name != "recbole":
        raise
    # from Python 3.12 on, `pip install .` cannot bring RecBole (its metadata needs ray < 2.7)
    raise ModuleNotFoundError(
        "RecBole 1.2.1 is not installed: from Python 3.12 on it is installed first, on its own, "
        "with `pip install --no-deps recbole==1.2.1` (docs/install.md)", name="recbole") from None

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
