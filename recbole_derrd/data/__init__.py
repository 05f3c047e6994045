"""Data, splits and evaluation helpers.

What lives here: building RecBole's dataset and dataloaders for a run and fingerprinting its
split (``dataset``), checking atomic files before RecBole reads them (``atomic_files``) and the
split before and after RecBole makes it (``split_checks``), fixed
train/validation/test files (``fixed_split``), fixed sampled-evaluation candidates
(``eval_candidates``), Recall within item-popularity groups (``popularity``) and per-user test
metrics (``per_user``).

May import: :mod:`recbole_derrd.errors`, :mod:`recbole_derrd.files` (atomic writes),
:mod:`recbole_derrd.settings.user_input` (RecBole's errors on the user's data as one message) and
:mod:`recbole_derrd.pipeline.distributed` (gathering figures over processes); never the models,
the teacher or the benchmark.
"""
