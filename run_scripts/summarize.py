"""One page across the benchmark tables (:mod:`recbole_derrd.benchmark.summary`):

    python run_scripts/summarize.py            # the tables listed in TABLES -> results/summary.md
    python run_scripts/summarize.py --tables=ml-100k:BPR:recbole,lastfm:BPR:fixed
"""

from recbole_derrd.benchmark.summary import main

if __name__ == "__main__":
    main()
