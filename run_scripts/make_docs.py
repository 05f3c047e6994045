"""Rewrite the generated parts of README.md and docs/ (recbole_derrd/benchmark/docs.py):

    python run_scripts/make_docs.py           # the key table from the YAML defaults' comments,
                                              # the README's headline from results/summary.md
    python run_scripts/make_docs.py --check   # exit 1, naming each file whose generated parts differ

A generated part lies between ``<!-- name:start -->`` and ``<!-- name:end -->``; edit its source
(a key's comment in ``recbole_derrd/properties``, or the benchmark cells behind
``results/summary.md``), never the part.
"""

import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from recbole_derrd.benchmark.docs import update  # noqa: E402
from recbole_derrd.cli import run_main  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a generated part differs from its source")
    parser.add_argument("--repo", default=REPO, help="the repository root (default: this checkout)")
    args = parser.parse_args(argv)
    differing = update(args.repo, check=args.check)
    for name in differing:
        print(f"{name}: generated part {'differs from its source' if args.check else 'rewritten'}")
    if args.check and differing:
        print("run: python run_scripts/make_docs.py", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run_main(main)
