"""Speed and memory of distillation, measured side by side in one process
(:mod:`recbole_derrd.benchmark.speed`, where each part is described):

    python run_scripts/bench_speed.py                       # everything, CPU
    python run_scripts/bench_speed.py --device=cuda         # the same on a GPU
    python run_scripts/bench_speed.py --parts=epoch --epoch_scales=ml-100k
    python run_scripts/bench_speed.py --parts=wholerun --threads=1
"""

from recbole_derrd.benchmark.speed import main

if __name__ == "__main__":
    main()
