"""
recbole_derrd.benchmark.popularity_shift
########################################
Where do a benchmark's models differ, by item popularity, on the validation and the test split?

A distilled student can score better than the student alone on validation and worse on test
(Gowalla's fixed split, README). ``run_scripts/popularity_shift.py`` re-evaluates the
checkpoints a finished ``run_scripts/benchmark.py`` table saved (its ``.cells.json``), on both
splits, and reports for every method and seed:

- Recall@20 within G item-popularity groups (groups of equal total training interactions,
  ``recbole_derrd.data.popularity``; 0 = the least popular items), on validation and on test;
- the mean training-set popularity (interactions) of each model's top-20 items, and of the
  split's own positives: whether a model leans to the items one split holds more of.

Nothing is trained; the same flags as the benchmark name the table::

    python run_scripts/popularity_shift.py --dataset=gowalla --data_path=dataset --protocol=fixed \\
        --backbone=BPR --methods=teacher,student,RRD --popularity_groups=5 \\
        --config_files="properties/experiments/converged.yaml properties/experiments/gowalla_cpu.yaml"

writes ``results/<dataset>/<backbone>-<protocol>.popularity-shift.md``.
"""

import os
import statistics
import sys
import tempfile

import torch

from recbole_derrd.benchmark import REPO
from recbole_derrd.benchmark.arguments import parse_args
from recbole_derrd.benchmark.inference import cell_model
from recbole_derrd.benchmark.methods import setting_label
from recbole_derrd.benchmark.table import Table
from recbole_derrd.benchmark.training import base_config, config_files
from recbole_derrd.errors import UserError

#: The cut-off of the reported recall and of the recommended items' popularity.
DEPTH = 20
SPLITS = ("valid", "test")


def evaluate_split(trainer, train_data, eval_data, n_groups):
    """Recall@20 by popularity group, and the training popularity of the top-20 items and of
    the split's positives, from the ranking RecBole's evaluator scores (``trainer``: one
    holding the model)."""
    from recbole_derrd.data.popularity import PopularityGroupRecorder

    recorder = PopularityGroupRecorder(trainer, train_data, n_groups=n_groups)
    with recorder:
        result = trainer.evaluate(eval_data, load_best_model=False, show_progress=False)
    report = recorder.report(log=False)
    counts = recorder.counts.double()
    top = torch.cat([topk[:, :DEPTH] for topk, _, _ in recorder.batches])
    positives = torch.cat([items for _, _, items in recorder.batches]).long()
    return {
        "recall": report[f"recall@{DEPTH}"],
        "overall": result[f"recall@{DEPTH}"],
        "recommended_popularity": counts[top].mean().item(),
        "positive_popularity": counts[positives].mean().item(),
        "items": report["items"],
    }


def evaluate_table(args):
    from recbole.utils import init_seed

    from recbole_derrd import Config
    from recbole_derrd.data.dataset import create_dataset, data_preparation
    from recbole_derrd.pipeline.training import build_trainer

    table = Table(args)
    results = {}  # (method, seed) -> {split: evaluation}
    size = args.sizes[0]
    for seed in args.seed_values:
        with tempfile.TemporaryDirectory() as scratch:  # the trainers' unused file names
            base = dict(base_config(args, table.work, seed), checkpoint_dir=scratch)
            config = Config(args.backbone, args.dataset, config_files(args), base, parse_command_line=False)
            if DEPTH not in config["topk"] or "recall" not in [metric.lower() for metric in config["metrics"]]:
                raise UserError(f"the protocol must report Recall@{DEPTH} (metrics, topk)")
            init_seed(config["seed"], config["reproducibility"])
            train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
            for method in args.methods:
                cells = [cell for cell in table.plan.reported_cells(method, args.teacher_size if method == "teacher" else size)
                         if cell["seed"] == seed and os.path.isfile(cell.get("checkpoint") or "")]
                if not cells:
                    continue
                model, model_config = cell_model(cells[0], args, base, train_data.dataset)
                trainer = build_trainer(model_config, model)
                results[(method, seed)] = {
                    split: evaluate_split(trainer, train_data, data, args.popularity_groups)
                    for split, data in zip(SPLITS, (valid_data, test_data))
                }
                print(f"{method} seed {seed}: " + ", ".join(
                    f"{split} recall@{DEPTH} {results[(method, seed)][split]['overall']:.4f}" for split in SPLITS))
    return table, results


def mean(values):
    values = [value for value in values if value == value]
    return statistics.mean(values) if values else float("nan")


def write_report(args, table, results, command):
    groups = args.popularity_groups
    methods = [method for method in args.methods if any(key[0] == method for key in results)]
    seeds = sorted({seed for _, seed in results})
    any_result = next(iter(results.values()))
    settings = []  # the weights (or tuned setting) of each student row, as its cells ran
    for method in methods:
        cells = table.plan.reported_cells(method, args.sizes[0])
        if method != "teacher" and cells and cells[0]["setting"]:
            settings.append(f"{method} {setting_label(cells[0]['setting'])}")
    lines = [
        f"# {args.dataset}, {args.backbone} backbone, {args.protocol} protocol: validation and test by item popularity",
        "",
        f"Written by `python run_scripts/popularity_shift.py {command}` from the checkpoints "
        f"of `{os.path.relpath(table.cells_file, REPO)}` (nothing trained). Seeds {seeds}; mean over the "
        f"seeds each method has. Groups: the items sorted by training interactions and cut into {groups} "
        "groups of equal total interactions (0 = the least popular; items per group: "
        f"{', '.join(str(count) for count in any_result['valid']['items'])}). Recall@{DEPTH} within a group: "
        "hits among a user's positives of that group, over them, averaged over the users that have one. "
        f"Popularity: mean training interactions of the top-{DEPTH} items (recommended; over users) and of "
        "the split's positives (over the split's interactions)."
        + (f" Settings of the table's cells: {'; '.join(settings)}." if settings else ""),
        "",
        "| method | seeds | split | recall@20 | "
        + " | ".join(f"group {group}" for group in range(groups))
        + " | recommended popularity | positives' popularity |",
        "|---|---|---|---|" + "---|" * groups + "---|---|",
    ]
    for method in methods:
        method_seeds = [seed for seed in seeds if (method, seed) in results]
        for split in SPLITS:
            runs = [results[(method, seed)][split] for seed in method_seeds]
            cells = [f"{mean([run['overall'] for run in runs]):.4f}"]
            cells += [f"{mean([run['recall'][group] for run in runs]):.4f}" for group in range(groups)]
            cells += [f"{mean([run['recommended_popularity'] for run in runs]):.1f}",
                      f"{mean([run['positive_popularity'] for run in runs]):.1f}"]
            lines.append(f"| {method} | {len(method_seeds)} | {split} | " + " | ".join(cells) + " |")
    if "student" in methods:
        lines += ["", f"Relative to the student alone: Recall@{DEPTH} of each method over the student alone's, "
                  "both the mean over the seeds both have (a ratio of means: tiny group recalls make "
                  "per-seed ratios swing).", "",
                  "| method | split | recall@20 | " + " | ".join(f"group {group}" for group in range(groups)) + " |",
                  "|---|---|---|" + "---|" * groups]
        for method in methods:
            if method == "student":
                continue
            paired = [seed for seed in seeds if (method, seed) in results and ("student", seed) in results]
            for split in SPLITS:
                def ratio(pick):
                    student = mean([pick(results[("student", seed)][split]) for seed in paired])
                    value = mean([pick(results[(method, seed)][split]) for seed in paired])
                    return value / student - 1 if student > 0 else float("nan")
                cells = [f"{100 * ratio(lambda run: run['overall']):+.1f}%"]
                cells += [f"{100 * ratio(lambda run, group=group: run['recall'][group]):+.1f}%" for group in range(groups)]
                lines.append(f"| {method} ({len(paired)} seed{'s' * (len(paired) != 1)}) | {split} | "
                             + " | ".join(cells) + " |")
    path = os.path.join(table.folder, f"{table.name}.popularity-shift.md")
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def main(argv=None):
    command = " ".join(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.popularity_groups < 1:
        args.popularity_groups = 5
    sys.argv = sys.argv[:1]  # RecBole's Config must not read these flags
    with torch.no_grad():
        table, results = evaluate_table(args)
    if not results:
        raise UserError(f"no checkpoint of {args.methods} found in the cells of {args.dataset}")
    with open(write_report(args, table, results, command)) as handle:
        print(handle.read())
    return results
