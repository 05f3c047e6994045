"""What distillation buys over training the small model alone (see
:mod:`recbole_derrd.benchmark.arguments` for what it runs and writes):

    python run_scripts/benchmark.py --dataset=ml-100k --backbone=BPR --protocol=recbole
    python run_scripts/benchmark.py --dataset=ml-100k --backbone=LightGCN --protocol=paper --seeds=3

A user error (a bad option, a table trained under other options, nothing to report) is one
``error: ...`` line, exit status 2; ``--debug`` shows its traceback.
"""

from recbole_derrd.benchmark.table import main
from recbole_derrd.cli import run_main

if __name__ == "__main__":
    run_main(main)
