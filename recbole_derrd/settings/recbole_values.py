"""
recbole_derrd.settings.recbole_values
#####################################
Checks of RecBole's own keys whose wrong values RecBole accepts when the configuration is
built, then fails on deep inside a run (a traceback after the data is loaded, or after an
epoch) or silently ignores (``learner: adamm`` trains with Adam; ``user_inter_num_interval:
foo`` filters nothing). Each problem is added to the run's
:class:`~recbole_derrd.settings.validation.ConfigChecker`, so every bad value is reported
together, before any data is loaded.
"""

import math
import numbers
import os
import re

from recbole.evaluator.register import metrics_dict

#: Optimizers RecBole's trainer builds (``learner``); any other name silently trains with Adam.
LEARNERS = ("adam", "adamw", "sgd", "adagrad", "rmsprop", "sparse_adam")

#: Largest value a float32 tensor holds: optimizers keep ``learning_rate`` and
#: ``weight_decay`` in float32 (a larger one fails with an overflow inside torch).
FLOAT32_MAX = 3.4028234663852886e38

#: One interval of RecBole's filters (``[5,inf)``, ``(0,100]``); several are joined with ``;``.
INTERVAL = re.compile(r"\s*[\[(]\s*([^,\[\]()]+?)\s*,\s*([^,\[\]()]+?)\s*[\])]\s*")

#: Training negative sampling's distributions (``none``: no sampling).
DISTRIBUTIONS = ("uniform", "popularity", "none")

#: Evaluation modes of ``eval_args`` (``uniN`` / ``popN``: N sampled negatives).
EVAL_MODE = re.compile(r"full|labeled|(uni|pop)[1-9]\d*")


def check_recbole_values(checker):
    """Every check of this module, on ``checker.config``."""
    config = checker.config
    seed = config["seed"]
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        checker.fail(f"seed must be an integer from 0 to 2**32 - 1, got {seed!r}")
    rate = config["learning_rate"]  # a positive number: check_training_keys
    if isinstance(rate, numbers.Real) and rate > FLOAT32_MAX:
        checker.fail(f"learning_rate must be at most {FLOAT32_MAX:.3g}, got {rate}")
    decay = checker.number("weight_decay", minimum=0)
    if decay is not None and decay > FLOAT32_MAX:
        checker.fail(f"weight_decay must be at most {FLOAT32_MAX:.3g}, got {decay}")
    learner = config["learner"]
    if not isinstance(learner, str) or learner.lower() not in LEARNERS:
        checker.fail(f"learner must be one of {', '.join(LEARNERS)}; got {learner!r}")
    checker.integer("stopping_step", minimum=0)
    checker.integer("eval_step")
    check_dataset_name(checker)
    check_checkpoint_dir(checker)
    check_intervals(checker)
    check_negative_sampling(checker)
    check_eval_args(checker)
    check_valid_metric(checker)


def check_dataset_name(checker):
    name = checker.config["dataset"]
    if not isinstance(name, str) or not name or name in (".", "..") or any(
        character in name for character in ("/", "\\", "\0")
    ):
        checker.fail(
            f"dataset must be a name (the folder under data_path and the files' stem), not a "
            f"path; got {name!r} (set data_path to the folder that holds the dataset's folder)"
        )


def check_checkpoint_dir(checker):
    """``checkpoint_dir`` must be a folder, or a path where one can be created and written."""
    folder = checker.config["checkpoint_dir"]
    if not isinstance(folder, str) or not folder:
        checker.fail(f"checkpoint_dir must be a folder's path, got {folder!r}")
        return
    existing = os.path.abspath(folder)
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = "is" if existing == os.path.abspath(folder) else f"is under '{existing}', which is"
        checker.fail(f"checkpoint_dir '{folder}' {where} a file, not a folder")
    elif not os.access(existing, os.W_OK | os.X_OK):
        checker.fail(f"checkpoint_dir '{folder}': '{existing}' cannot be written by this user")


def interval_problem(value):
    """What is wrong with a filter interval string, or None."""
    if value is None:
        return None
    for part in str(value).split(";"):
        match = INTERVAL.fullmatch(part)
        try:
            low, high = (float(match.group(1)), float(match.group(2))) if match else (None, None)
        except ValueError:
            low = high = None
        if low is None or math.isnan(low) or math.isnan(high) or low > high:
            return f"{part.strip()!r} is not an interval such as '[5,inf)' or '(0,100]'"
    return None


def check_intervals(checker):
    config = checker.config
    for key in ("user_inter_num_interval", "item_inter_num_interval"):
        problem = interval_problem(config[key])
        if problem:
            checker.fail(f"{key}: {problem} (RecBole would ignore it and filter nothing)")
    val_interval = config["val_interval"]
    if val_interval is not None:
        if not isinstance(val_interval, dict):
            checker.fail(f"val_interval must be a dict of field -> interval, got {val_interval!r}")
            return
        for field, interval in val_interval.items():
            problem = interval_problem(interval)
            if problem:
                checker.fail(f"val_interval[{field!r}]: {problem} (RecBole would ignore it)")


def check_negative_sampling(checker):
    args = checker.config["train_neg_sample_args"]
    if args is None or args.get("distribution") == "none":
        return
    if args.get("distribution") not in DISTRIBUTIONS:
        checker.fail(f"train_neg_sample_args: distribution must be one of {', '.join(DISTRIBUTIONS)}; "
                     f"got {args.get('distribution')!r}")
    sample_num = args.get("sample_num")
    if isinstance(sample_num, bool) or not isinstance(sample_num, numbers.Integral) or sample_num < 1:
        checker.fail(f"train_neg_sample_args: sample_num must be a positive integer, got {sample_num!r}")
    candidates = args.get("candidate_num", 0)
    if isinstance(candidates, bool) or not isinstance(candidates, numbers.Integral) or candidates < 0:
        checker.fail(f"train_neg_sample_args: candidate_num must be an integer >= 0, got {candidates!r}")


def check_eval_args(checker):
    """``eval_args`` as RecBole's split reads it: ``split`` of ``RS`` (three ratios) or ``LS``
    (``valid_and_test``) unless ``benchmark_filename`` gives the split, ``order`` ``RO``/``TO``, ``group_by`` ``user``/``none``, ``mode``
    ``full``/``labeled``/``uniN``/``popN``."""
    eval_args = checker.config["eval_args"]
    split = eval_args.get("split")
    if checker.config["benchmark_filename"]:
        pass  # the split is the files' (benchmark_filename)
    elif not isinstance(split, dict) or len(split) != 1 or not set(split) <= {"RS", "LS"}:
        checker.fail(f"eval_args: split must be {{'RS': [train, valid, test]}} or "
                     f"{{'LS': 'valid_and_test'}}, got {split!r}")
    elif "RS" in split:
        ratios = split["RS"]
        if (not isinstance(ratios, (list, tuple)) or len(ratios) != 3
                or any(isinstance(ratio, bool) or not isinstance(ratio, numbers.Real)
                       or not math.isfinite(ratio) or ratio < 0 for ratio in ratios)
                or not sum(ratios) > 0):
            checker.fail(f"eval_args: split RS must be three ratios >= 0 (train, valid, test), "
                         f"got {ratios!r}")
    elif split["LS"] != "valid_and_test":
        checker.fail(f"eval_args: split LS must be 'valid_and_test', got {split['LS']!r}")
    if eval_args.get("order") not in ("RO", "TO"):
        checker.fail(f"eval_args: order must be RO or TO, got {eval_args.get('order')!r}")
    if eval_args.get("group_by") not in ("user", "none", None):
        checker.fail(f"eval_args: group_by must be user or none, got {eval_args.get('group_by')!r}")
    for phase, mode in (eval_args.get("mode") or {}).items():
        if not isinstance(mode, str) or not EVAL_MODE.fullmatch(mode):
            checker.fail(f"eval_args: mode {phase} must be full, labeled, uniN or popN, got {mode!r}")


def check_valid_metric(checker):
    """``valid_metric`` must name one of the run's metrics (``NDCG@10``: a top-k metric and one
    of ``topk``), or RecBole fails after the first epoch."""
    config = checker.config
    available = set()
    for metric in config["metrics"] or []:
        metric_class = metrics_dict.get(str(metric).lower())
        if metric_class is None:
            continue  # RecBole refused it when the configuration was built
        needs = getattr(metric_class, "metric_need", [])
        if "rec.topk" in needs or "rec.items" in needs:
            available.update(f"{str(metric).lower()}@{k}" for k in config["topk"] or [])
        else:
            available.add(str(metric).lower())
    valid_metric = config["valid_metric"]
    if not isinstance(valid_metric, str) or valid_metric.lower() not in available:
        checker.fail(f"valid_metric must be one of this run's metrics ({', '.join(sorted(available))}), "
                     f"got {valid_metric!r}")
