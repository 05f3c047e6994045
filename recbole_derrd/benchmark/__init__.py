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

#: The checkout the harness works in: its experiment configurations
#: (``properties/experiments``), ``results/`` and ``.bench/`` are there, beside the package.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: Where the reports are written by default.
RESULTS = os.path.join(REPO, "results")
