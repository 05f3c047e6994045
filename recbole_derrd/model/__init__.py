"""The plugin's models: distillers with a RecBole backbone as the student."""

from recbole_derrd.model.cd import CD
from recbole_derrd.model.derrd import DERRD
from recbole_derrd.model.htd import HTD
from recbole_derrd.model.rd import RD
from recbole_derrd.model.unkd import UnKD

__all__ = ["DERRD", "RD", "CD", "UnKD", "HTD"]
