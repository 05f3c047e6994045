"""Generate a synthetic RecBole dataset (power-law user activity and item popularity):

    python run_scripts/make_synthetic.py --preset=ml-20m --name=synthetic-ml-20m --data_path=dataset/
    python run_scripts/make_synthetic.py --users=5000 --items=2000 --interactions=200000 --name=tiny

Then: python run_scripts/run.py --model=DERRD --dataset=synthetic-ml-20m --data_path=dataset/
"""

import argparse
import time

import numpy as np

from recbole_derrd.benchmark.synthetic import PRESETS, synthetic_interactions, write_atomic_files

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None)
    parser.add_argument("--users", type=int, default=None)
    parser.add_argument("--items", type=int, default=None)
    parser.add_argument("--interactions", type=int, default=None)
    parser.add_argument("--user_exponent", type=float, default=0.8)
    parser.add_argument("--item_exponent", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", required=True, help="dataset name (folder and file stem)")
    parser.add_argument("--data_path", default="dataset/")
    args = parser.parse_args()

    sizes = dict(PRESETS[args.preset]) if args.preset else {}
    for key, value in (("n_users", args.users), ("n_items", args.items),
                       ("n_interactions", args.interactions)):
        if value is not None:
            sizes[key] = value
    if len(sizes) != 3:
        parser.error("give --preset or all of --users, --items, --interactions")
    start = time.time()
    users, items = synthetic_interactions(
        **sizes, user_exponent=args.user_exponent, item_exponent=args.item_exponent, seed=args.seed
    )
    path = write_atomic_files(args.data_path, args.name, users, items, seed=args.seed)
    degrees = np.bincount(users)
    print(
        f"{path}: {users.size:,} interactions, {np.unique(users).size:,} users, "
        f"{np.unique(items).size:,} items; user degree min/median/max "
        f"{degrees.min()}/{int(np.median(degrees))}/{degrees.max()} ({time.time() - start:.1f}s)"
    )
