"""The benchmark harness: experiments, reports and speed measurements of the plugin.

Not part of the plugin's core: nothing outside this folder imports it. It needs the
``benchmark`` extra (``pip install '.[benchmark]'``). The command-line entry points are the
scripts of ``run_scripts/``.
"""
