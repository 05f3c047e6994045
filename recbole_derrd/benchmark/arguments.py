"""
recbole_derrd.benchmark.arguments
#################################
The benchmark's command line. The benchmark measures what distillation buys over training the
small model alone, on RecBole's splits and evaluators:

    python run_scripts/benchmark.py --dataset=ml-100k --backbone=BPR --protocol=recbole
    python run_scripts/benchmark.py --dataset=ml-100k --backbone=LightGCN --protocol=paper --seeds=3
    python run_scripts/benchmark.py --dataset=ml-1m --backbone=BPR --sizes=10,20,50   # downloads ml-1m

For each seed (a seed is a RecBole split and initialisation) it trains and tests the teacher
(``--teacher_size``), then at each student size: the student alone (the same backbone, small),
RD, CD, DE, RRD and DE-RRD, all distilled from that teacher with the plugin's defaults. It records
test metrics, inference parameters, full-sort inference time for all users (median of repeats,
all models of a seed timed side by side in one process), training time per epoch and the
student/teacher ratio of the main metric, then writes ``results/<dataset>/<backbone>-<protocol>``
``.md`` / ``.csv`` / ``.png`` (mean and standard deviation over seeds). Finished cells are kept in
``...-<protocol>.cells.json`` and ``.per_user.npz``: an interrupted benchmark resumes where it
stopped, and a cell interrupted in training continues from its last epoch
(:func:`recbole_derrd.benchmark.training.interrupted_run`).

This module reads the command line (:func:`parse_args`); a mistake in it is a
:class:`~recbole_derrd.errors.UserError` (one ``error: ...`` line, exit status 2).
"""

import argparse
import os

import yaml

from recbole_derrd.benchmark import REPO, methods
from recbole_derrd.benchmark.methods import (
    DEFAULT_METHODS, DISTILLERS, IDENTITY_KEYS, LEARNER_KEYS, METHODS, PROTOCOLS, WEIGHT_KEYS, default_weights,
)
from recbole_derrd.errors import UserError


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose usage errors are user errors: one ``error: ...`` line and exit
    status 2 at the scripts' boundary (:func:`recbole_derrd.cli.run_main`), not its usage text."""

    def error(self, message):
        raise UserError(f"{message} (see --help)")


def build_parser():
    parser = ArgumentParser(description="What distillation buys over training the small model alone, on "
                                        "RecBole's splits and evaluators.")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--backbone", default="BPR", choices=["BPR", "LightGCN", "NeuMF"])
    parser.add_argument("--protocol", default="recbole", choices=sorted(PROTOCOLS))
    parser.add_argument("--sizes", default="20", help="student sizes, comma-separated")
    parser.add_argument("--teacher_size", type=int, default=200)
    parser.add_argument("--teacher_backbone", default=None, choices=["BPR", "LightGCN", "NeuMF"],
                        help="the teacher's model (default: --backbone), e.g. a LightGCN teacher for "
                             "BPR students: the table is then named <backbone>-from-<teacher>-<protocol>")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (2020, 2021, ...)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"comma-separated, among {','.join(METHODS)}")
    parser.add_argument("--popularity_groups", type=int, default=0,
                        help="G > 0: also report test Recall@20 within G item-popularity groups")
    parser.add_argument("--metric", default="ndcg@10", help="the main metric")
    parser.add_argument("--epochs", type=int, default=None, help="override RecBole's epochs")
    parser.add_argument("--run_seeds", default="",
                        help="train only these seeds (comma-separated; default: all), e.g. one seed "
                             "per process, in parallel: the processes share the cells file")
    parser.add_argument("--report_only", action="store_true",
                        help="train nothing: write the reports from the cells already run")
    parser.add_argument("--tune", action="store_true",
                        help="search each method's weights on the first seed's validation split "
                             "(TUNING_GRIDS), then run the chosen settings at every seed")
    parser.add_argument("--search_only", action="store_true",
                        help="with --tune: run the search and its chosen setting only, not the rows beside "
                             "it (the defaults, 'auto'), e.g. a study of one key's effect on a tuned table "
                             "(--method_settings) that costs no more than the rows it compares")
    parser.add_argument("--other_weights", default="",
                        help="without --tune: also run these weights besides the defaults, e.g. "
                             "'RRD:lambda_rrd=0.001;RRD:lambda_rrd=0.01' (reported apart)")
    parser.add_argument("--auto_rows", action="store_true",
                        help="without --tune: also run RRD and DE-RRD (those among --methods) with "
                             "'auto' weights at the first seed, the plugin's own weight search (with "
                             "--tune they always run)")
    parser.add_argument("--method_settings", default="",
                        help="other keys than the weights for a distiller's every cell, part of its cells' "
                             "names, e.g. 'UnKD:unkd_topn=4' (a split where the default cannot run)")
    parser.add_argument("--config_files", default="", help="extra YAML files, space-separated")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--gpu_id", default="")
    parser.add_argument("--inference_repeats", type=int, default=5)
    parser.add_argument("--results", default=os.path.join(REPO, "results"))
    parser.add_argument("--work", default=os.path.join(REPO, ".bench", "benchmark"))
    return parser


def parse_args(argv=None):
    """The benchmark's options (``argv``: None for the command line), checked; the lists and
    settings parsed (``sizes``, ``seed_values``, ``run_seed_values``, ``methods``,
    ``config_files``, ``other_weights``, ``method_settings``; their text kept as ``*_text``)."""
    args = build_parser().parse_args(argv)
    for option, value in (("--seeds", args.seeds), ("--teacher_size", args.teacher_size),
                          ("--inference_repeats", args.inference_repeats), ("--epochs", args.epochs)):
        if value is not None and value < 1:
            raise UserError(f"{option}={value}: must be at least 1")
    if args.popularity_groups < 0:
        raise UserError(f"--popularity_groups={args.popularity_groups}: must be 0 (none) or more")
    args.teacher_backbone = args.teacher_backbone or args.backbone
    args.sizes_text = args.sizes
    args.sizes = positive_integers("--sizes", args.sizes)
    args.seed_values = [2020 + index for index in range(args.seeds)]
    args.run_seed_values = positive_integers("--run_seeds", args.run_seeds) if args.run_seeds else args.seed_values
    if not set(args.run_seed_values) <= set(args.seed_values):
        raise UserError(f"--run_seeds must be among the benchmark's seeds {args.seed_values}")
    args.methods = [method for method in args.methods.split(",") if method]
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        raise UserError(f"unknown methods {sorted(unknown)}; choose among {METHODS}")
    if any(method in DISTILLERS for method in args.methods) and "teacher" not in args.methods:
        args.methods.insert(0, "teacher")  # the distillers need it
    args.config_files = [path for path in args.config_files.split(" ") if path]
    check_metric(args.metric, args.protocol, args.config_files)
    args.other_weights_text = args.other_weights
    try:
        args.other_weights = parse_other_weights(args.other_weights, args.methods, args.backbone)
    except ValueError as error:
        raise UserError(f"--other_weights: {error}") from None
    if args.search_only and not args.tune:
        raise UserError("--search_only is for tables with --tune (it leaves out the rows beside the search)")
    if args.other_weights and args.tune:
        raise UserError("--other_weights is for tables without --tune (a --tune table has its grid)")
    args.method_settings_text = args.method_settings
    try:
        args.method_settings = parse_method_settings(args.method_settings, args.methods, args.backbone)
    except ValueError as error:
        raise UserError(f"--method_settings: {error}") from None
    return args


def positive_integers(option, text):
    """``'10,20'`` -> ``[10, 20]``; anything else than positive integers is a user error."""
    try:
        values = [int(value) for value in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise UserError(f"{option}={text!r}: expected positive integers, comma-separated")
    return values


def table_settings(protocol, config_files):
    """The keys the protocol's YAML file and the table's --config_files set (a later file's
    value replaces an earlier one's)."""
    settings = {}
    for path in [os.path.join(REPO, PROTOCOLS[protocol])] + config_files:
        if not os.path.isfile(path):
            raise UserError(f"--config_files: no file {path}")
        with open(path) as handle:
            settings.update(yaml.safe_load(handle) or {})
    return settings


def check_metric(metric, protocol, config_files):
    """Refuse a main metric the table's runs do not report: one of the ``metrics`` at one of
    the ``topk`` of the protocol and the table's --config_files (the last file that sets them)."""
    settings = table_settings(protocol, config_files)
    names = settings.get("metrics", [])
    ks = settings.get("topk", [])
    names, ks = [names] if isinstance(names, str) else names, [ks] if isinstance(ks, int) else ks
    reported = [f"{name.lower()}@{k}" for name in names for k in ks]
    if metric not in reported:
        raise UserError(f"--metric={metric}: the table's runs report {', '.join(reported)}")


def parse_method_settings(text, methods_run, backbone="BPR"):
    """``'UnKD:unkd_topn=4,unkd_num_pairs=3'`` -> ``{'UnKD': {'unkd_topn': 4, 'unkd_num_pairs': 3}}``.
    Keys of the distiller's own YAML other than its loss weights (tuned, or --other_weights),
    the learner's and those that tell the methods apart (IDENTITY_KEYS); a value is read as the
    type of the key's default (``1e-3`` a number where the default is one, YAML would read a
    string)."""
    parsed = {}
    for method, assignments in method_assignments(text, methods_run):
        defaults = methods.plugin_defaults(method, backbone)
        for key, text_value in assignments:
            if key not in defaults or key in LEARNER_KEYS or key in IDENTITY_KEYS:
                raise ValueError(f"'{key}' is not a key of {method} to set (properties/model/"
                                 f"{DISTILLERS[method][0]}.yaml, not its weights, the learner's or "
                                 f"those that tell the methods apart: {sorted(IDENTITY_KEYS)})")
            if key in WEIGHT_KEYS.get(method, []):
                raise ValueError(f"{key} is a loss weight: --tune searches it, --other_weights sets it")
            parsed.setdefault(method, {})[key] = typed_value(key, text_value, defaults[key])
    return parsed


def typed_value(key, text_value, default):
    """``text_value`` read as YAML, as a number where ``default`` is one."""
    value = yaml.safe_load(text_value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{key} is True or False, not {text_value!r}")
    elif isinstance(default, (int, float)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{key}={text_value!r} is not a number") from None
        value = int(number) if isinstance(default, int) and number.is_integer() else number
    return value


def parse_other_weights(text, methods_run, backbone="BPR"):
    """``'RRD:lambda_rrd=0.001;DE-RRD:lambda_de=0.1'`` -> ``[('RRD', {'lambda_rrd': 0.001}),
    ('DE-RRD', {'lambda_de': 0.1, 'lambda_rrd': <its default>})]``: every weight of the method
    explicit (the unnamed ones at their defaults), as its cells are keyed."""
    parsed = []
    for method, assignments in method_assignments(text, methods_run):
        weights = default_weights(method, backbone)
        for key, value in assignments:
            if key not in weights:
                raise ValueError(f"{method}'s weights are {WEIGHT_KEYS[method]}, not '{key}'")
            try:
                weights[key] = float(value)
            except ValueError:
                raise ValueError(f"{key}={value!r} is not a number") from None
        parsed.append((method, weights))
    return parsed


def method_assignments(text, methods_run):
    """``'RRD:a=1,b=2;UnKD:c=3'`` -> ``[('RRD', [('a', '1'), ('b', '2')]), ('UnKD', [('c', '3')])]``,
    each method a distiller among ``methods_run`` and each assignment ``key=value``."""
    parsed = []
    for item in filter(None, (part.strip() for part in text.split(";"))):
        method, _, assignments = item.partition(":")
        if method not in methods_run or method not in DISTILLERS:
            raise ValueError(f"'{method}' is not a distiller among --methods {methods_run}")
        pairs = []
        for assignment in filter(None, assignments.split(",")):
            key, equals, value = assignment.partition("=")
            if not equals or not value:
                raise ValueError(f"'{assignment}' is not key=value")
            pairs.append((key, value))
        parsed.append((method, pairs))
    return parsed
