"""Train and test a model on a dataset, RecBole-style:

    python run_scripts/run.py --model=DERRD --dataset=ml-100k [--config_files="a.yaml b.yaml"] [--key=value ...]

Any RecBole general model runs the same way (``--model=BPR``), so baselines and DERRD share one
path. Every other ``--key=value`` is a RecBole/plugin configuration override.

- ``--resume=saved/DERRD-<date>.resume.pth`` continues an interrupted run (same model, dataset
  and settings) from the epoch it stopped in.
- ``--nproc=4`` trains with 4 processes on this machine (RecBole's multi-process mode: one per
  GPU, or on the CPU with ``--dist_backend=gloo``); several machines add ``--world_size``
  (processes in all), ``--ip`` and ``--port`` (the machine of global rank 0) and
  ``--group_offset`` (global rank of this machine's first process).

A user error (a bad key or file, a mismatched teacher, a bad resume file, missing data) is
printed as one ``error: ...`` line, exit status 2; ``--debug`` (or ``RECBOLE_DERRD_DEBUG=1``)
shows its traceback.
"""

import argparse

from recbole_derrd.cli import run_main
from recbole_derrd.quick_start import run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", "-m", type=str, default="DERRD", help="model name")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k", help="dataset name")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated YAML files")
    parser.add_argument("--resume", type=str, default=None, help="resume file of an interrupted run")
    parser.add_argument("--nproc", type=int, default=1, help="processes on this machine")
    parser.add_argument("--world_size", type=int, default=-1, help="processes on all machines")
    parser.add_argument("--ip", type=str, default="localhost", help="address of global rank 0")
    parser.add_argument("--port", type=str, default="5678", help="port of global rank 0")
    parser.add_argument("--group_offset", type=int, default=0, help="global rank of this machine's first process")
    parser.add_argument("--debug", action="store_true", help="show the traceback of user errors too")
    args, _ = parser.parse_known_args()

    config_file_list = args.config_files.split() if args.config_files else None
    return run(
        model=args.model,
        dataset=args.dataset,
        config_file_list=config_file_list,
        resume=args.resume,
        nproc=args.nproc,
        world_size=args.world_size,
        ip=args.ip,
        port=args.port,
        group_offset=args.group_offset,
    )


if __name__ == "__main__":
    run_main(main)
