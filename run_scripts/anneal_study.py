"""DE's annealing schedule, former against a rerun (:mod:`recbole_derrd.benchmark.anneal_study`):

    python run_scripts/anneal_study.py      # -> results/anneal/study.md
"""

from recbole_derrd.benchmark.anneal_study import main

if __name__ == "__main__":
    main()
