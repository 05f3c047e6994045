"""
recbole_derrd.data.fixed_split
##############################
Fixed train / validation / test splits in the LightGCN text format, converted into RecBole
atomic files for RecBole's ``benchmark_filename`` mechanism.

Published benchmarks (LightGCN's Gowalla, Yelp2018, Amazon-Book, ...) ship their split: a
``train.txt``, ``valid.txt`` and ``test.txt`` (each optionally gzipped) with one line per user,
``user_id item_id item_id ...``, 0-based integer ids separated by whitespace. Comparing with
published numbers requires that exact split, not a RecBole re-split, so the converter writes
``<output_dir>/<name>/<name>.train.inter``, ``.valid.inter`` and ``.test.inter``, which RecBole
loads as they are with ``benchmark_filename: [train, valid, test]``
(``properties/experiments/protocol_fixed_split.yaml``). RecBole then skips all of its
filtering (``Dataset._data_processing``): no interaction of the files is dropped.

The ids are written unchanged as tokens; RecBole remaps them to its own internal ids.
"""

import gzip
import os

import numpy as np

from recbole_derrd.files.checkpoint import atomic_write
from recbole_derrd.errors import UserError

#: The splits in the order RecBole's ``benchmark_filename`` lists them.
SPLITS = ("train", "valid", "test")
#: The atomic files' header: user and item ids as tokens, nothing else.
HEADER = "user_id:token\titem_id:token\n"


class LightGCNFormatError(UserError, ValueError):
    """An input file is missing or not in the LightGCN text format (the message names the file
    and, for a malformed line, its line number)."""


def find_split_file(input_dir, split):
    """The path of ``split`` (``train``, ``valid``, ``test``) in ``input_dir``: ``<split>.txt.gz``
    or ``<split>.txt``; None if neither exists.

    Raises:
        LightGCNFormatError: both exist (which one is meant is ambiguous).
    """
    candidates = [os.path.join(input_dir, f"{split}.txt{suffix}") for suffix in (".gz", "")]
    present = [path for path in candidates if os.path.isfile(path)]
    if len(present) > 1:
        raise LightGCNFormatError(
            f"{present[0]} and {present[1]} both exist: keep only one of them"
        )
    return present[0] if present else None


def _open_text(path):
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def read_lightgcn_file(path):
    """Read one split file in the LightGCN text format.

    Blank lines are skipped; a line with only a user id is a user without interactions in this
    split. A user may appear on one line only, and an item at most once on that line: a second
    occurrence would be a second interaction RecBole counts twice, which no published split has.

    Returns:
        tuple of numpy.ndarray: ``(users, items)``, int64, one entry per interaction, in the
        file's order.

    Raises:
        LightGCNFormatError: unreadable file or malformed line (the message names file and line).
    """
    users, items = [], []
    first_line_of_user = {}
    try:
        with _open_text(path) as handle:
            for line_number, line in enumerate(handle, start=1):
                fields = line.split()
                if not fields:
                    continue
                where = f"{path}, line {line_number}"
                try:
                    ids = [int(field) for field in fields]
                except ValueError:
                    bad = next(field for field in fields if not _is_int(field))
                    raise LightGCNFormatError(
                        f"{where}: '{bad}' is not an integer id (expected 'user_id item_id ...')"
                    ) from None
                if min(ids) < 0:
                    raise LightGCNFormatError(f"{where}: negative id {min(ids)}")
                user, user_items = ids[0], ids[1:]
                if user in first_line_of_user:
                    raise LightGCNFormatError(
                        f"{where}: user {user} already has line {first_line_of_user[user]}"
                    )
                first_line_of_user[user] = line_number
                if len(set(user_items)) != len(user_items):
                    repeated = next(i for i in user_items if user_items.count(i) > 1)
                    raise LightGCNFormatError(
                        f"{where}: item {repeated} appears more than once for user {user}"
                    )
                users.extend([user] * len(user_items))
                items.extend(user_items)
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise LightGCNFormatError(f"{path}: cannot be read ({error})") from None
    return np.array(users, dtype=np.int64), np.array(items, dtype=np.int64)


def _is_int(text):
    try:
        int(text)
    except ValueError:
        return False
    return True


def read_lightgcn_dir(input_dir):
    """Read ``train``, ``valid`` and ``test`` of ``input_dir``.

    All three are required: early stopping on the test split would report an optimistic test
    result, so a split without validation data must be given one first.

    Returns:
        dict: ``{split: (users, items)}`` for every split of :data:`SPLITS`.

    Raises:
        LightGCNFormatError: a missing or malformed file.
    """
    if not os.path.isdir(input_dir):
        raise LightGCNFormatError(f"{input_dir}: no such directory")
    splits = {}
    for split in SPLITS:
        path = find_split_file(input_dir, split)
        if path is None:
            raise LightGCNFormatError(
                f"{os.path.join(input_dir, split)}.txt[.gz] not found: a fixed split needs "
                f"train, valid and test files (validation on the test split would bias the "
                f"test result)"
            )
        splits[split] = read_lightgcn_file(path)
    return splits


def atomic_file_paths(output_dir, name):
    """``{split: path}`` of the atomic files RecBole reads with ``benchmark_filename``."""
    folder = os.path.join(output_dir, name)
    return {split: os.path.join(folder, f"{name}.{split}.inter") for split in SPLITS}


def split_summary(splits):
    """Sizes of a split: interactions per split, users and items of all splits together, and
    (user, item) pairs that occur in more than one split (a leak worth knowing about)."""
    users = np.concatenate([splits[split][0] for split in SPLITS])
    items = np.concatenate([splits[split][1] for split in SPLITS])
    summary = {split: int(len(splits[split][0])) for split in SPLITS}
    summary["users"] = int(len(np.unique(users)))
    summary["items"] = int(len(np.unique(items)))
    n_items = int(items.max(initial=-1)) + 1
    pairs = np.concatenate(
        [np.unique(splits[split][0] * n_items + splits[split][1]) for split in SPLITS]
    )
    summary["pairs_in_several_splits"] = int(len(pairs) - len(np.unique(pairs)))
    return summary


def _write_atomic(path, users, items):
    """Write one atomic file under a temporary name beside ``path``, then rename it into place,
    so that a reader never sees a half-written file."""
    rows = "".join(f"{user}\t{item}\n" for user, item in zip(users.tolist(), items.tolist()))
    atomic_write(path, lambda stream: stream.write((HEADER + rows).encode("utf-8")))


def merged_file_path(output_dir, name):
    """``<output_dir>/<name>/<name>.inter``: all interactions, for RecBole's own splits."""
    return os.path.join(output_dir, name, f"{name}.inter")


def convert_lightgcn(input_dir, name, output_dir, overwrite=False, merged=False):
    """Convert a LightGCN-format split into RecBole atomic files.

    Every input file is read and checked before anything is written; each output file is
    written under a temporary name and renamed into place.

    Args:
        input_dir (str): folder with ``train``, ``valid``, ``test`` ``.txt`` or ``.txt.gz``.
        name (str): dataset name (RecBole's ``dataset``): the folder and the files' stem.
        output_dir (str): RecBole's ``data_path``; the files go to ``<output_dir>/<name>/``.
        overwrite (bool): replace existing atomic files (otherwise they are refused).
        merged (bool): write one file ``<name>.inter`` with the interactions of all three
            splits instead (each (user, item) pair once), for a protocol that splits the data
            itself (e.g. leave-one-out); the fixed split is then not used.

    Returns:
        dict: ``{"files": {split: path}, **split_summary(...)}``.

    Raises:
        LightGCNFormatError: missing or malformed input.
        FileExistsError: an output file exists and ``overwrite`` is False.
    """
    if not name or os.sep in name or name in (".", ".."):
        raise ValueError(f"invalid dataset name {name!r}")
    paths = {"all": merged_file_path(output_dir, name)} if merged else atomic_file_paths(output_dir, name)
    existing = [path for path in paths.values() if os.path.lexists(path)]
    if existing and not overwrite:
        raise FileExistsError(
            f"{existing[0]} already exists ({len(existing)} of the {len(paths)} files): pass overwrite=True "
            f"(--overwrite) to replace them"
        )
    splits = read_lightgcn_dir(input_dir)
    os.makedirs(os.path.dirname(next(iter(paths.values()))), exist_ok=True)
    summary = split_summary(splits)
    if merged:
        users = np.concatenate([splits[split][0] for split in SPLITS])
        items = np.concatenate([splits[split][1] for split in SPLITS])
        n_items = int(items.max(initial=-1)) + 1
        _, first = np.unique(users * n_items + items, return_index=True)
        keep = np.sort(first)  # each pair once, in file order
        _write_atomic(paths["all"], users[keep], items[keep])
        summary["all"] = int(len(keep))
    else:
        for split in SPLITS:
            _write_atomic(paths[split], *splits[split])
    return dict(files=paths, **summary)
