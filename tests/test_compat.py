"""recbole_derrd.compat: each name it restores is there, as the type or behaviour it had, on a
numpy / scipy that lacks it; and where a name exists (numpy 1.x, scipy < 1.13) nothing at all
is changed (docs/install.md)."""

import json
import os
import subprocess
import sys
import types

import numpy
import pytest
import scipy.sparse

from recbole_derrd import compat

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Each removed numpy alias and the type it named in numpy 1.x (written out, not read from the
#: module under test).
ALIASES = [("float_", numpy.float64), ("complex_", numpy.complex128), ("unicode_", numpy.str_)]


def numpy_without(*missing):
    """A stand-in numpy module: the aliases' target types, and every alias but ``missing``,
    each bound to a marker object that a restore must leave alone."""
    fake = types.ModuleType("numpy")
    fake.float64, fake.complex128, fake.str_ = numpy.float64, numpy.complex128, numpy.str_
    for alias, _ in ALIASES:
        if alias not in missing:
            setattr(fake, alias, object())
    return fake


def same_namespace(before, after):
    """Whether two ``vars()`` snapshots hold the same names bound to the same objects."""
    return before.keys() == after.keys() and all(after[name] is value for name, value in before.items())


@pytest.mark.parametrize("alias, target", ALIASES)
def test_a_missing_numpy_alias_is_restored_as_its_type(alias, target):
    fake = numpy_without(alias)
    before = dict(vars(fake))
    assert compat.restore_numpy_aliases(fake) == [alias]
    assert getattr(fake, alias) is target
    after = dict(vars(fake))
    assert after.pop(alias) is target
    assert same_namespace(before, after)  # nothing else added or rebound


@pytest.mark.parametrize("alias, target", ALIASES)
def test_numpy_has_each_alias_as_numpy_1_named_it(alias, target):
    """numpy 1.x's own alias (so the restored one is the same type), or on numpy 2 the one
    the plugin's import restored."""
    import recbole_derrd  # noqa: F401 (applies the module)

    assert getattr(numpy, alias) is target


def test_present_numpy_aliases_are_left_alone():
    fake = numpy_without()
    before = dict(vars(fake))
    assert compat.restore_numpy_aliases(fake) == []
    assert same_namespace(before, dict(vars(fake)))


def test_apply_again_changes_nothing():
    import recbole_derrd  # noqa: F401 (applied once already)

    numpy_before, dok_before = dict(vars(numpy)), dict(vars(scipy.sparse.dok_matrix))
    assert compat.apply() == []
    assert same_namespace(numpy_before, dict(vars(numpy)))
    assert same_namespace(dok_before, dict(vars(scipy.sparse.dok_matrix)))


#: Run in a fresh interpreter: numpy's and scipy's dok_matrix's names before and after the
#: plugin's import (which applies the module), as JSON.
IMPORT_DIFF = """
import json, types, numpy, scipy.sparse
dok = scipy.sparse.dok_matrix
missing = [name for name in ("float_", "complex_", "unicode_") if not hasattr(numpy, name)]
had_update = hasattr(dok, "_update")
numpy_before, dok_before = dict(vars(numpy)), dict(vars(dok))
import recbole_derrd
changed = [name for name, value in numpy_before.items() if vars(numpy).get(name) is not value]
added = [name for name, value in vars(numpy).items()
         if name not in numpy_before and not isinstance(value, types.ModuleType)]
print(json.dumps({"numpy_major": int(numpy.__version__.split(".")[0]), "missing": missing,
                  "changed": changed, "added": sorted(added), "had_update": had_update,
                  "dok_changed": [n for n, v in dok_before.items() if vars(dok).get(n) is not v],
                  "dok_added": sorted(set(vars(dok)) - set(dok_before))}))
"""


def test_importing_the_plugin_changes_only_what_is_missing():
    """On numpy 1.x nothing in numpy changes; on numpy 2 exactly the three aliases are added.
    Nothing already bound is rebound (submodules that imports load are not counted)."""
    done = subprocess.run([sys.executable, "-c", IMPORT_DIFF], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    diff = json.loads(done.stdout.strip().splitlines()[-1])
    assert diff["changed"] == [] and diff["dok_changed"] == []
    assert diff["added"] == sorted(diff["missing"])
    assert diff["missing"] == ([] if diff["numpy_major"] < 2 else ["float_", "complex_", "unicode_"])
    assert diff["dok_added"] == ([] if diff["had_update"] else ["_update"])


def test_recbole_config_runs_its_numpy_aliases_on_this_numpy():
    """RecBole's Config.compatibility_settings reads np.float_ (and the others): the
    AttributeError it raises on numpy 2 without this module is gone."""
    import recbole_derrd  # noqa: F401
    from recbole.config import Config as RecBoleConfig

    RecBoleConfig("BPR", "ml-100k", config_dict={"gpu_id": "", "state": "ERROR"})
    assert numpy.float is numpy.float64 and numpy.unicode is numpy.str_  # RecBole's own aliases


class NewLayoutDok:
    """scipy >= 1.13's dok_matrix, as far as the restore sees it: entries in ``_dict``, no
    ``_update``."""

    def __init__(self, shape):
        self._dict = {}


def test_a_missing_dok_update_is_restored_as_an_unchecked_bulk_store():
    dok = type("Dok", (NewLayoutDok,), {})
    assert compat.restore_dok_update(dok) is True
    matrix = dok((3, 3))
    matrix._update({(0, 2): 1, (2, 0): 1})
    assert matrix._dict == {(0, 2): 1, (2, 0): 1}


def test_a_present_dok_update_is_left_alone():
    def own_update(self, data):
        pass

    dok = type("Dok", (NewLayoutDok,), {"_update": own_update})
    assert compat.restore_dok_update(dok) is False
    assert vars(dok)["_update"] is own_update


def test_a_dok_without_the_dict_layout_is_left_alone():
    """An update of ``_dict`` would store nothing such a matrix reads."""
    dok = type("Dok", (), {"__init__": lambda self, shape: None})
    assert compat.restore_dok_update(dok) is False
    assert not hasattr(dok, "_update")


def test_dok_update_builds_lightgcn_s_graph_on_this_scipy():
    """What RecBole's LightGCN does (lightgcn.py get_norm_adj_mat): a symmetric user-item
    adjacency stored with ``_update``, then normalized; on scipy >= 1.13 through the restored
    method, before it through scipy's own."""
    import recbole_derrd  # noqa: F401

    n_users, n_items = 2, 3
    rows, cols = numpy.array([0, 0, 1]), numpy.array([0, 2, 1])
    adjacency = scipy.sparse.dok_matrix((n_users + n_items,) * 2, dtype=numpy.float32)
    entries = dict(zip(zip(rows, cols + n_users), [1] * len(rows)))
    entries.update(dict(zip(zip(cols + n_users, rows), [1] * len(rows))))
    adjacency._update(entries)
    dense = numpy.zeros((5, 5), dtype=numpy.float32)
    dense[rows, cols + n_users] = dense[cols + n_users, rows] = 1
    assert adjacency.nnz == 6
    numpy.testing.assert_array_equal(adjacency.toarray(), dense)
    degree = numpy.asarray((adjacency > 0).sum(axis=1)).ravel()
    scale = scipy.sparse.diags(numpy.power(degree + 1e-7, -0.5))
    numpy.testing.assert_allclose(scipy.sparse.coo_matrix(scale * adjacency * scale).toarray(),
                                  dense / numpy.sqrt(numpy.outer(degree, degree)), rtol=1e-6)


def test_without_recbole_the_import_names_the_missing_install_step():
    """From Python 3.12 on `pip install .` does not bring RecBole (docs/install.md): the
    plugin's import says how to install it instead of a bare "No module named 'recbole'"."""
    hide_recbole = "import sys; sys.modules['recbole'] = None; import recbole_derrd"
    done = subprocess.run([sys.executable, "-c", hide_recbole], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1
    assert "ModuleNotFoundError: RecBole 1.2.1 is not installed" in done.stderr
    assert "pip install --no-deps recbole==1.2.1" in done.stderr
