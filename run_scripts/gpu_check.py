"""GPU check: every distiller of the plugin trains and evaluates on a CUDA device, and its
student, exported, scores the same on the CPU (:mod:`recbole_derrd.benchmark.gpu_check`):

    python run_scripts/gpu_check.py --teacher_checkpoint=saved/BPR-<date>.pth [--epochs=5]

The exit status is 1 when a check fails.
"""

import sys

from recbole_derrd.benchmark.gpu_check import main

if __name__ == "__main__":
    sys.exit(main())
