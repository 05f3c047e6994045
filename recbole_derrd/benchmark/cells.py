"""
recbole_derrd.benchmark.cells
#############################
A table's cells on disk, shared by the processes of one benchmark command, and what a table's
cells train under.

A table ``<backbone>-<protocol>`` keeps:

- ``.cells.json``: every cell (one trained and tested model) but its per-user metrics;
- ``.per_user.npz``: each cell's per-user test metrics (:data:`PER_USER_METRICS`, the
  significance tests' input), one float64 array per cell and metric named
  ``<cell key>|<metric>``, compressed (numpy's ``.npz``, with fixed entry dates: the same
  cells give the same bytes);
- ``.training.json``: the ``--config_files`` and ``--epochs`` every cell trains under.

Both cell files are read and written under one file lock (``.cells.json.lock``). A process
writes only the cells it set since it last read or wrote them (:meth:`CellStore.save`), so it
never writes back its stale copy of a cell another process saved meanwhile. A ``.cells.json``
of the former format (per-user metrics as lists inside it) reads the same, and is rewritten in
this one (:meth:`CellStore.migrate`).
"""

import contextlib
import json
import os
import zipfile

import numpy as np

from recbole_derrd.errors import UserError

#: Per-user test metrics kept in each cell for the significance tests.
PER_USER_METRICS = ("ndcg@10", "recall@20", "hit@10")
#: The field of a cell that holds them: {metric: float64 array over the test users}.
PER_USER = "test_per_user"


@contextlib.contextmanager
def exclusive_lock(path, wait=True):
    """Hold an exclusive ``flock`` on ``path`` (created if missing) until the block ends; it
    is released when the process ends, however it ends. Yields whether it is held: always
    (``wait``, the default), or only if no other process holds it now (``wait=False``)."""
    import fcntl

    with open(path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def per_user_path(cells_file):
    """``<table>.cells.json`` -> ``<table>.per_user.npz``."""
    return cells_file[:-len(".cells.json")] + ".per_user.npz"


def read_cells(cells_file):
    """The cells of ``cells_file`` ({} when there is none), each with its per-user metrics
    (float64 arrays), and whether the file is of the former format (per-user lists inline)."""
    if not os.path.isfile(cells_file):
        return {}, False
    with open(cells_file) as handle:
        cells = json.load(handle)
    arrays = {}
    if os.path.isfile(per_user_path(cells_file)):
        with np.load(per_user_path(cells_file), allow_pickle=False) as stored:
            for name in stored.files:
                key, _, metric = name.rpartition("|")
                if key in cells:
                    arrays.setdefault(key, {})[metric] = stored[name]
    former = False
    for key, cell in cells.items():
        if PER_USER in cell:  # the former format: the JSON's own lists (the newer record)
            former = True
            cells[key] = dict(cell, **{PER_USER: {metric: np.asarray(values, dtype=np.float64)
                                                  for metric, values in cell[PER_USER].items()}})
        elif key in arrays:
            cell[PER_USER] = arrays[key]
    return cells, former


def write_arrays(path, arrays):
    """``np.savez_compressed``'s format, entries in name order with a fixed date: the same
    arrays always give the same bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            entry = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(entry, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.ascontiguousarray(arrays[name], dtype=np.float64),
                                          allow_pickle=False)


def write_cells(cells_file, cells):
    """Write ``cells`` (a whole table): the per-user file first, then the JSON, each to a
    temporary file renamed into place, so a reader never sees half a file and the JSON never
    names a cell whose per-user metrics are not written yet."""
    arrays = {f"{key}|{metric}": values for key, cell in cells.items()
              for metric, values in (cell.get(PER_USER) or {}).items()}
    per_user = per_user_path(cells_file)
    if arrays:
        write_arrays(per_user + ".tmp", arrays)
        os.replace(per_user + ".tmp", per_user)
    elif os.path.isfile(per_user):  # no cell has per-user metrics (any more)
        os.remove(per_user)
    records = {key: {field: value for field, value in cell.items() if field != PER_USER}
               for key, cell in cells.items()}
    with open(cells_file + ".tmp", "w") as handle:
        json.dump(records, handle, indent=1, sort_keys=True)
    os.replace(cells_file + ".tmp", cells_file)


def training_text(record):
    """A table's training record (:func:`training_record`) as the options that give it."""
    files = " ".join(record.get("config_files") or []) or "none"
    epochs = record.get("epochs")
    return f"--config_files=\"{files}\" and " + (f"--epochs={epochs}" if epochs is not None else "no --epochs")


def training_record(args):
    """What every cell of a table trains under, besides its own settings: the extra
    configuration files and the --epochs override."""
    return {"config_files": [os.path.normpath(path) for path in args.config_files], "epochs": args.epochs}


class CellStore:
    """The cells of one table as this process holds them (``cells``: key -> cell), and their
    files in ``folder``. Cells are replaced, never edited in place: a cell of ``cells`` that is
    not the object last read from or written to the files was set by this process since."""

    def __init__(self, folder, name):
        base = os.path.join(folder, name)
        self.name = name
        self.cells_file = base + ".cells.json"
        self.training_file = base + ".training.json"
        self.lock_file = self.cells_file + ".lock"
        self.cells, self.former_format = read_cells(self.cells_file)
        # the cells as last read from or written to the files
        self.synced = dict(self.cells)

    @contextlib.contextmanager
    def saved_cells(self):
        """The cells in the files, under the files' lock (held until the block ends)."""
        with exclusive_lock(self.lock_file):
            yield read_cells(self.cells_file)[0]

    def save(self):
        """Write the cells this process set since it last read or wrote the files, merged with
        those other processes of the same benchmark saved meanwhile (e.g. another seed run in
        parallel with --run_seeds), under the lock: a cell another process saved since is not
        replaced by this process's older copy of it."""
        with self.saved_cells() as saved:
            changed = {key: cell for key, cell in self.cells.items() if self.synced.get(key) is not cell}
            self.cells = dict(saved, **changed)
            self.synced = dict(self.cells)
            write_cells(self.cells_file, self.cells)

    def reload(self):
        """Take the cells other processes saved meanwhile (theirs replace this process's)."""
        with self.saved_cells() as saved:
            self.cells = dict(self.cells, **saved)
            self.synced = dict(saved)

    def migrate(self):
        """Rewrite files of the former format in this one (the same cells)."""
        if self.former_format:
            with self.saved_cells() as saved:
                write_cells(self.cells_file, saved)
            self.former_format = False

    def check_training_record(self, wanted):
        """Refuse, before any work, to add cells or reports to a table whose cells trained under
        another configuration than ``wanted`` (:func:`training_record`; e.g. a table capped at
        100 epochs, run again with converged.yaml): its finished cells would be taken as this
        command's. A table without a record takes ``wanted``."""
        with exclusive_lock(self.lock_file):  # two processes starting a table at once
            if not os.path.isfile(self.training_file):
                with open(self.training_file, "w") as handle:
                    json.dump(wanted, handle, indent=1, sort_keys=True)
                return
            with open(self.training_file) as handle:
                recorded = json.load(handle)
        if recorded != wanted:
            raise UserError(
                f"{self.cells_file} holds cells trained with {training_text(recorded)}, not "
                f"{training_text(wanted)} as this command asks: its finished cells would be "
                f"reported as this command's. Run with the table's own options, or move its "
                f"files ({self.name}.*) aside to start a new table.")


def retrained_teacher_cell(former, retrained):
    """The teacher cell of a seed after its teacher was trained again (its checkpoint was
    removed), ``former`` being the cell it replaces (None: there was none).

    Retraining reproduces the teacher on the machine that trained it, but not always on another
    (other CPU kernels round differently, and training compounds it). A retrained teacher whose
    test metrics differ is not the teacher the seed's earlier distillers learnt from: the cell
    keeps reporting the former teacher and carries the retrained one under ``retrained``
    (its checkpoint teaches the seed's later cells, which are marked ``retrained_teacher``)."""
    if former is None:
        return retrained
    shared = set(former["test"]) & set(retrained["test"])
    if shared and all(former["test"][metric] == retrained["test"][metric] for metric in shared):
        # reproduced: only the file is new (the times stay those of the seed's machine)
        return dict(former, checkpoint=retrained["checkpoint"])
    kept = ("test", "valid_score", "epochs", "train_seconds", "checkpoint", "timing")
    return dict(former, retrained={field: retrained.get(field) for field in kept})


def teacher_checkpoint(cell):
    """The file a teacher cell teaches from: the reported teacher's if it is there, else the
    retrained one's (:func:`retrained_teacher_cell`); None if neither is."""
    for path in (cell.get("checkpoint"), cell.get("retrained", {}).get("checkpoint")):
        if path and os.path.isfile(path):
            return path
    return None
