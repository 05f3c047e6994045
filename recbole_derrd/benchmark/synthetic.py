"""
recbole_derrd.benchmark.synthetic
#################################
Synthetic implicit-feedback data with power-law user activity and item popularity, written as
RecBole atomic files (``<data_path>/<name>/<name>.inter``), for scale work where public datasets
cannot be downloaded.

User activity and item popularity both follow Zipf-like laws
(``weight(rank) ~ rank ** -exponent``). Every user gets a target number of interactions drawn
from its activity weight (clipped to ``[min_user_interactions, max_user_fraction * n_items]``);
its items are drawn by popularity, and duplicate (user, item) pairs are redrawn a few rounds,
so the final count is close to, and never above, the requested one.
"""

import os

import numpy as np
import pandas as pd

from recbole_derrd.files.checkpoint import atomic_write

#: Sizes of public datasets this module can imitate.
PRESETS = {
    "ml-100k": dict(n_users=943, n_items=1682, n_interactions=100_000),
    "ml-20m": dict(n_users=138_000, n_items=27_000, n_interactions=20_000_000),
    "gowalla": dict(n_users=107_000, n_items=1_280_000, n_interactions=6_400_000),
    "amazon-book": dict(n_users=110_000, n_items=96_000, n_interactions=3_000_000),
}


def zipf_weights(count, exponent, rng):
    """Power-law weights ``rank ** -exponent`` over ``count`` ids, in random id order."""
    weights = np.arange(1, count + 1, dtype=np.float64) ** -exponent
    return rng.permutation(weights / weights.sum())


def synthetic_interactions(
    n_users,
    n_items,
    n_interactions,
    user_exponent=0.8,
    item_exponent=0.9,
    min_user_interactions=5,
    max_user_fraction=0.3,
    redraw_rounds=6,
    seed=0,
):
    """Distinct (user, item) pairs, 0-based ids, as two int64 arrays sorted by user.

    Returns:
        tuple: ``(users, items)``.
    """
    rng = np.random.default_rng(seed)
    activity = zipf_weights(n_users, user_exponent, rng)
    popularity = zipf_weights(n_items, item_exponent, rng)
    most = max(min_user_interactions, int(max_user_fraction * n_items))
    targets = np.clip(np.round(activity * n_interactions), min_user_interactions, most)
    targets = np.clip(np.round(targets * n_interactions / targets.sum()), min_user_interactions, most)
    targets = targets.astype(np.int64)

    keys = np.empty(0, dtype=np.int64)
    missing = targets
    for _ in range(redraw_rounds):
        users = np.repeat(np.arange(n_users, dtype=np.int64), missing)
        items = rng.choice(n_items, size=users.size, p=popularity)
        keys = np.unique(np.concatenate([keys, users * n_items + items]))
        have = np.bincount(keys // n_items, minlength=n_users)
        missing = np.maximum(targets - have, 0)
        if missing.sum() == 0:
            break
    return keys // n_items, keys % n_items


def write_atomic_files(data_path, name, users, items, seed=0):
    """Write ``<data_path>/<name>/<name>.inter`` (user and item tokens, rating 1, a random
    timestamp); returns the file's path.

    Raises:
        FileExistsError: the file exists (a dataset is never overwritten).
    """
    rng = np.random.default_rng(seed)
    folder = os.path.join(data_path, name)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}.inter")
    if os.path.lexists(path):
        raise FileExistsError(f"{path} exists: choose another name, or delete it first.")
    frame = pd.DataFrame(
        {
            "user_id:token": users,
            "item_id:token": items,
            "rating:float": np.ones(users.size, dtype=np.int8),
            "timestamp:float": rng.integers(1_000_000_000, 1_600_000_000, size=users.size),
        }
    )
    try:  # complete or absent, never half-written; never replaces a file
        atomic_write(path, lambda stream: frame.to_csv(stream, sep="\t", index=False), exclusive=True)
    except FileExistsError:
        raise FileExistsError(f"{path} exists: choose another name, or delete it first.") from None
    return path
