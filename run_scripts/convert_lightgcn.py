"""Convert a fixed split in the LightGCN text format into RecBole atomic files:

    python run_scripts/convert_lightgcn.py --input_dir=path/to/gowalla --name=gowalla --output_dir=dataset
    python run_scripts/run.py --model=BPR --dataset=gowalla --data_path=dataset \\
        --config_files=properties/experiments/protocol_fixed_split.yaml

The input folder holds ``train``, ``valid`` and ``test`` as ``.txt`` or ``.txt.gz``, one line per
user: ``user_id item_id item_id ...`` (0-based integer ids). The output is
``<output_dir>/<name>/<name>.{train,valid,test}.inter``, for RecBole's ``benchmark_filename``;
with ``--merged``, one file ``<output_dir>/<name>/<name>.inter`` holding every interaction once,
for a protocol that splits the data itself (e.g. the paper's leave-one-out:
``--name=lastfm-all --merged``, then ``--protocol=paper`` with ``order: RO``, as the LightGCN
format has no timestamps). Existing files are kept unless ``--overwrite`` is given.
"""

import argparse
import sys

from recbole_derrd.cli import USER_ERROR_STATUS, run_main
from recbole_derrd.data.fixed_split import LightGCNFormatError, convert_lightgcn


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input_dir", required=True, help="folder with train/valid/test.txt[.gz]")
    parser.add_argument("--name", required=True, help="dataset name (folder and file stem)")
    parser.add_argument("--output_dir", default="dataset", help="RecBole's data_path")
    parser.add_argument("--overwrite", action="store_true", help="replace existing atomic files")
    parser.add_argument("--merged", action="store_true",
                        help="one file of all interactions (<name>.inter) instead of the three splits")
    args = parser.parse_args(argv)
    try:
        summary = convert_lightgcn(args.input_dir, args.name, args.output_dir, args.overwrite, args.merged)
    except (LightGCNFormatError, FileExistsError, ValueError) as error:
        # the same message and status as the other scripts' user errors (recbole_derrd.cli)
        print(f"error: {error}", file=sys.stderr)
        return USER_ERROR_STATUS
    for split, path in summary["files"].items():
        print(f"{path}: {summary[split]:,} interactions")
    print(f"{summary['users']:,} users, {summary['items']:,} items in all splits")
    if summary["pairs_in_several_splits"]:
        print(f"warning: {summary['pairs_in_several_splits']:,} (user, item) pairs occur in "
              f"more than one split", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))  # a full disk or an unwritable folder: one line too
