"""The plugin's models: distillers with a RecBole backbone as the student."""

from recbole_derrd.model.derrd import DERRD

__all__ = ["DERRD"]
