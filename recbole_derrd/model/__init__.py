"""The plugin's models: distillers with a RecBole backbone as the student.

What lives here: the base class every distiller shares (``distiller``), each distiller in a
module of its own (``derrd``, ``rd``, ``cd``, ``unkd``, ``htd``), each registering its class
(:func:`~recbole_derrd.settings.registry.register_distiller`), the backbone adapters
(``backbones``, one class per RecBole architecture, registered likewise) and the distillation
terms' building blocks (``experts``, ``rrd``) and the backbone's loss under ``loss_reduction``
(``objective``, shared with the student alone). Importing this package registers them all.

May import: :mod:`recbole_derrd.errors`, :mod:`recbole_derrd.settings`,
:mod:`recbole_derrd.data`, :mod:`recbole_derrd.teacher` (the frozen teacher's ranking),
:mod:`recbole_derrd.trainer` (a distiller's trainer) and
:mod:`recbole_derrd.pipeline.distributed` (which process writes files); never the run pipeline's
other modules or the benchmark.
"""

from recbole_derrd.model.derrd import DERRD
from recbole_derrd.model.rd import RD
from recbole_derrd.model.cd import CD
from recbole_derrd.model.unkd import UnKD
from recbole_derrd.model.htd import HTD

__all__ = ["DERRD", "RD", "CD", "UnKD", "HTD"]
