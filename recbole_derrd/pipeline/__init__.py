"""The run pipeline: what one run does, from configuration to the final table.

What lives here: data, teacher and model preparation and the cached trainings of a run
(``training``), the same student trained alone for the run's comparison (``student_alone``),
the automatic loss-weight search on the validation split (``weight_search``, its resumable
journal ``search_journal``), multi-process runs (``distributed``) and the run's random state
(``random_state``). The public entry points (``run``, ``objective_function``) are in
:mod:`recbole_derrd.quick_start`, as in RecBole.

May import every other folder of the plugin but :mod:`recbole_derrd.benchmark`.
"""
