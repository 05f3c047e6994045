"""A benchmark table's checkpoints re-evaluated on validation and test by item-popularity group
(:mod:`recbole_derrd.benchmark.popularity_shift`); nothing is trained, the benchmark's flags name
the table::

    python run_scripts/popularity_shift.py --dataset=gowalla --data_path=dataset --protocol=fixed \\
        --backbone=BPR --methods=teacher,student,RRD --popularity_groups=5 \\
        --config_files="properties/experiments/converged.yaml properties/experiments/gowalla_cpu.yaml"

A user error is one ``error: ...`` line, exit status 2; ``--debug`` shows its traceback.
"""

from recbole_derrd.benchmark.popularity_shift import main
from recbole_derrd.cli import run_main

if __name__ == "__main__":
    run_main(main)
