"""Train and test a model on a dataset, RecBole-style:

    python run_scripts/run.py --model=DERRD --dataset=ml-100k [--config_files="a.yaml b.yaml"] [--key=value ...]

Any RecBole general model runs the same way (``--model=BPR``), so baselines and DERRD share one
path. Every other ``--key=value`` is a RecBole/plugin configuration override.
"""

import argparse

from recbole_derrd.quick_start import run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", "-m", type=str, default="DERRD", help="model name")
    parser.add_argument("--dataset", "-d", type=str, default="ml-100k", help="dataset name")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated YAML files")
    args, _ = parser.parse_known_args()

    config_file_list = args.config_files.strip().split(" ") if args.config_files else None
    run(model=args.model, dataset=args.dataset, config_file_list=config_file_list)
