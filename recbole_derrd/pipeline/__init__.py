"""The run pipeline: what one run does, from configuration to the final table.

What lives here: the run's inputs prepared once (data, training split, the frozen teacher) and
the one training function every training calls, the run's, each weight-search trial's and those
of the models trained on demand (``training``), the same student trained alone for the run's
comparison (``student_alone``, trained by ``student_objective``: the distilled student's
objective less the distillation terms), the teacher's validation score against the student's
(``teacher_quality``), the automatic loss-weight search on the validation split
(``weight_search``, its resumable journal ``search_journal``, and the run's choice and log of
its weights ``loss_weights``), what a run returns and its final table (``report``),
multi-process runs (``distributed``) and the run's random state (``random_state``). The public
entry points (``run``, ``objective_function``) are in :mod:`recbole_derrd.quick_start`, as in
RecBole, which puts these steps in order.

May import every other folder of the plugin but :mod:`recbole_derrd.benchmark`.
"""
