"""Hyperparameter search on the validation split with RecBole's HyperTuning (hyperopt, no ray),
through the plugin's own objective function:

    python run_scripts/run_hyper.py --model=DERRD --dataset=ml-100k \\
        --config_files=properties/experiments/protocol_recbole.yaml \\
        --params_file=properties/experiments/hyper_derrd.test --output_file=results/hyper/DERRD-BPR.md

The params file has one line per key: ``<key> choice [v1,v2,...]`` (or RecBole's ``uniform`` /
``loguniform`` / ``quniform``); its values are read as literals, never run as code
(:mod:`recbole_derrd.settings.search_space`). Models, datasets and fixed keys come from the command line and
the config files, as for run.py (e.g. ``--student_model=LightGCN``). Each trial trains on the
training split, is scored on the validation split (``valid_metric``) and also tested; the
output lists every trial and the best one. A user error is one ``error: ...`` line, exit status 2
(``--debug``: with its traceback).
"""

import argparse

from recbole.trainer.hyper_tuning import HyperTuning

from recbole_derrd.files.checkpoint import write_new_text_file
from recbole_derrd.files.writing import check_folder_writable
from recbole_derrd.cli import run_main
from recbole_derrd.quick_start import objective_function
from recbole_derrd.settings.search_space import read_params_file


def markdown_report(tuner, title):
    lines = [f"# {title}", "", "| parameters | best valid score | valid result | test result |",
             "|---|---|---|---|"]
    for parameters, result in tuner.params2result.items():
        valid = ", ".join(f"{k} {v:.4f}" for k, v in result["best_valid_result"].items())
        test = ", ".join(f"{k} {v:.4f}" for k, v in result["test_result"].items())
        lines.append(f"| {parameters} | {result['best_valid_score']:.4f} | {valid} | {test} |")
    lines += ["", f"Best (validation): `{tuner.params2str(tuner.best_params)}`, "
              f"score {tuner.best_score:.4f}.", ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config_files", type=str, default=None, help="space-separated YAML files")
    parser.add_argument("--params_file", type=str, required=True, help="the search space")
    parser.add_argument("--output_file", type=str, default="hyper_result.md")
    parser.add_argument("--algo", type=str, default="exhaustive", choices=["exhaustive", "random", "bayes"])
    parser.add_argument("--max_evals", type=int, default=100)
    parser.add_argument("--debug", action="store_true", help="show the traceback of user errors too")
    args, _ = parser.parse_known_args()

    config_file_list = args.config_files.split() if args.config_files else None
    check_folder_writable(args.output_file)  # before the search, not after it
    tuner = HyperTuning(
        objective_function,
        algo=args.algo,
        max_evals=args.max_evals,
        params_dict=read_params_file(args.params_file),  # values read as literals, never run
        fixed_config_file_list=config_file_list,
    )
    tuner.run()
    # an earlier report is never overwritten, and an interrupt leaves no half-written one
    output_file = write_new_text_file(
        markdown_report(tuner, f"Hyperparameter search ({tuner.model})"), args.output_file
    )
    print("report:", output_file)
    print("best params:", tuner.best_params)
    print("best valid score:", tuner.best_score)


if __name__ == "__main__":
    run_main(main)
