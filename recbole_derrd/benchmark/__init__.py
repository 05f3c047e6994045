"""The benchmark harness: experiments, reports and speed measurements of the plugin.

Not part of the plugin's core: nothing outside this folder imports it. It needs the
``benchmark`` extra (``pip install '.[benchmark]'``). The command-line entry points are the
scripts of ``run_scripts/``, thin wrappers of these modules:

- tables of methods (``run_scripts/benchmark.py``): :mod:`.arguments` (the command line),
  :mod:`.methods` (methods, grids, the plugin's defaults, cell names), :mod:`.cells` (the
  locked cell store and a table's training record), :mod:`.plan` (what a table runs and
  reports, the searches' choices), :mod:`.jobs` (the job pool shared by the processes of one
  command), :mod:`.training` (one cell trained and recorded), :mod:`.inference` (inference
  times), :mod:`.report`, :mod:`.sections`, :mod:`.plot` (markdown, csv, png),
  :mod:`.significance` (paired tests), :mod:`.table` (a table's parts together, ``main``);
- :mod:`.summary` (``summarize.py``), :mod:`.popularity_shift`, :mod:`.gpu_check`;
- speed (``bench_speed.py``): :mod:`.speed` (the command line), :mod:`.speed_epoch`,
  :mod:`.speed_scale`, :mod:`.speed_kernels`, :mod:`.wholerun`, :mod:`.speed_report`;
- :mod:`.synthetic` (synthetic data), :mod:`.machine` (what a timing ran on).
"""

import os
import sys


def find_checkout():
    """The repository checkout the harness works in: the one holding the experiment
    configurations (``properties/experiments``), ``results/`` and ``.bench/``. The package's
    own parent in a source checkout or an editable install; with the package installed
    (``pip install .``), the checkout of the script that runs (``run_scripts/<script>.py``),
    else the current folder (the commands run from the repository root)."""
    candidates = [os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))]
    if sys.argv and sys.argv[0]:
        candidates.append(os.path.dirname(os.path.dirname(os.path.abspath(sys.argv[0]))))
    candidates.append(os.getcwd())
    for candidate in candidates:
        if os.path.isdir(os.path.join(candidate, "properties", "experiments")):
            return candidate
    return os.getcwd()


#: The checkout the harness works in (:func:`find_checkout`).
REPO = find_checkout()
#: Where the reports are written by default.
RESULTS = os.path.join(REPO, "results")
