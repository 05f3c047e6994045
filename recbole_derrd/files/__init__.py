"""Files and checkpoints.

What lives here: the plugin's checkpoint format, which loads with ``torch.load(weights_only=True)``,
its atomic writes, exclusive names and the refusal of foreign or untrusted files (``checkpoint``),
the export of a distilled student as a plain RecBole model (``export``), and the locks that
give a run its files exclusively (``locks``), and the atomic, bounded writes every file goes
through (``writing``).

May import: :mod:`recbole_derrd.errors`, :mod:`recbole_derrd.settings` (which keys decide a
split or a model), :mod:`recbole_derrd.data.dataset` (split fingerprints) and
:mod:`recbole_derrd.utils` (model classes, for the export).
"""
