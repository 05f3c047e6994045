"""
recbole_derrd.compat
####################
What RecBole 1.2.1 needs from numpy and scipy releases that removed it, restored only where it
is missing (Python 3.12 and later install numpy 2 and scipy >= 1.13: ``docs/install.md``).

- numpy 2.0 removed the aliases ``np.float_``, ``np.complex_`` and ``np.unicode_`` (NEP 52).
  RecBole reads all three in ``Config.compatibility_settings``, which every run calls, and
  fails there with ``AttributeError``. They are restored as the types they always named. The
  aliases that method itself assigns (``np.float``, ``np.int``, ``np.str``...) are RecBole's
  own doing, not touched here.
- scipy 1.13 rebuilt ``dok_matrix`` on a private ``_dict`` instead of subclassing ``dict`` and
  dropped its private ``_update``, which the graph building of RecBole's LightGCN (a backbone of
  this plugin), NGCF, GCMC and SpectralCF calls. It is restored as what it was: a bulk,
  unchecked update of the stored ``{(row, col): value}`` entries.

Nothing else is patched, and a name that is present is never replaced: on numpy 1.x and
scipy < 1.13 :func:`apply` changes nothing. ``recbole_derrd/__init__.py`` calls it before
anything imports RecBole.
"""

#: numpy 2.0's removed aliases that RecBole 1.2.1 reads, and the numpy type each one named.
NUMPY_ALIASES = {"float_": "float64", "complex_": "complex128", "unicode_": "str_"}


def restore_numpy_aliases(numpy_module=None):
    """Set each of :data:`NUMPY_ALIASES` that ``numpy_module`` (numpy) lacks.

    Returns:
        list of str: the names restored (empty on a numpy that has them all).
    """
    if numpy_module is None:
        import numpy as numpy_module
    restored = []
    for alias, target in NUMPY_ALIASES.items():
        # hasattr, not vars(): numpy 2 answers a removed name through its module __getattr__,
        # which raises AttributeError, so only a really missing name is restored
        if not hasattr(numpy_module, alias):
            setattr(numpy_module, alias, getattr(numpy_module, target))
            restored.append(alias)
    return restored


def _dok_update(self, data):
    """scipy < 1.13's ``dok_matrix._update``: store ``data``'s ``{(row, col): value}`` entries
    as they are, without checking indices or values (restored by :mod:`recbole_derrd.compat`
    for RecBole's graph-based models)."""
    self._dict.update(data)


def restore_dok_update(dok_matrix=None):
    """Give ``dok_matrix`` (scipy's) the ``_update`` method RecBole calls, if it lacks one.

    Only a dok_matrix that keeps its entries in ``_dict`` (scipy >= 1.13) gets it: on another
    layout an update of ``_dict`` would store nothing the matrix reads.

    Returns:
        bool: whether the method was added.
    """
    if dok_matrix is None:
        from scipy.sparse import dok_matrix
    if hasattr(dok_matrix, "_update") or not hasattr(dok_matrix((1, 1)), "_dict"):
        return False
    dok_matrix._update = _dok_update
    return True


def apply():
    """Restore whatever of the above this numpy and scipy lack (idempotent).

    Returns:
        list of str: what was restored, e.g. ``['numpy.float_', 'scipy.sparse.dok_matrix._update']``.
    """
    restored = ["numpy." + alias for alias in restore_numpy_aliases()]
    if restore_dok_update():
        restored.append("scipy.sparse.dok_matrix._update")
    return restored
