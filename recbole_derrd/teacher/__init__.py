"""The teacher: loading it, caching it, ranking with it.

What lives here: loading a teacher checkpoint (or configuring an on-demand teacher) and checking
it against the student's data and split (``loading``), the lock and file names of cached
trainings (``cache``), and the teacher's top-N per user with the rank-discounted and uniform
samplers drawn from it (``ranking``).

May import: :mod:`recbole_derrd.errors`, :mod:`recbole_derrd.files`, :mod:`recbole_derrd.data`
and :mod:`recbole_derrd.settings`; never the models or the run pipeline.
"""
