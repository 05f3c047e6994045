"""
recbole_derrd.benchmark.gpu_check
#################################
GPU check: every distiller of the plugin trains and evaluates on a CUDA device, and its
student, exported, scores the same on the CPU.

    python run_scripts/gpu_check.py --teacher_checkpoint=saved/BPR-<date>.pth [--epochs=5]

For each distiller (DE-RRD, RRD, DE, RRD with the teacher's top-K, RD, CD, HTD, FTD, UnKD; BPR
students, d = 20) on ml-100k (RecBole's protocol, seed 2020): a short run on ``--device`` from the
same teacher (its s/epoch recorded); its test NDCG@10 against the same student at
initialisation (the run must have trained it); then the student is exported
(:func:`recbole_derrd.files.export.export_student`), read back with plain ``torch.load`` and evaluated
on the CPU with RecBole's evaluator: its test metrics must match those of the run on the device
within ``--tolerance`` (the two devices' float rounding can only swap nearly tied items).
Written to ``results/gpu/check-<device>.{json,md}`` (``cpu``, or ``cuda-`` and the GPU's
model); the exit status is 1 when a check fails.
"""

import argparse
import json
import os
import statistics
import sys
import time
import traceback

import torch

from recbole_derrd.benchmark import REPO
from recbole_derrd.benchmark.methods import DISTILLERS

PROTOCOL = os.path.join(REPO, "properties", "experiments", "protocol_recbole.yaml")

#: (name, model, settings) of every distiller checked: the benchmark's, and HTD's flat variant.
VARIANTS = [(name, model, dict(settings)) for name, (model, settings) in DISTILLERS.items()]
VARIANTS.append(("FTD", "HTD", {"htd_flat": True}))

#: Metrics compared between the device's run and the CPU's evaluation of the exported student.
COMPARED = ("ndcg@10", "recall@10", "hit@10")


def student_config(settings, device):
    """The student (BPR, d = 20) alone on the run's split, on ``device`` (``cpu`` or ``cuda``)."""
    from recbole_derrd import Config

    # gpu_id "0" on every device: RecBole sets CUDA_VISIBLE_DEVICES from it, and "" would hide the
    # GPU from the rest of this process; the device is then set explicitly
    config = Config("BPR", "ml-100k", [PROTOCOL], dict(settings, embedding_size=20, gpu_id="0"),
                    parse_command_line=False)
    config["device"] = torch.device(device)
    return config


def evaluate_on_cpu(settings, state_dict=None):
    """Test metrics of a BPR student with ``state_dict`` (None: at its initialisation), on the CPU."""
    from recbole.model.general_recommender import BPR

    from recbole_derrd.pipeline.training import evaluate_model, prepare_data

    config = student_config(settings, "cpu")
    _, train_data, _, test_data = prepare_data(config)
    torch.manual_seed(config["seed"])
    model = BPR(config, train_data.dataset).eval()
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return {key: float(value) for key, value in evaluate_model(config, model, train_data, test_data).items()}


def verdict(on_device, on_cpu, initial, losses, tolerance):
    """The check of one distiller from its numbers: the CPU's metrics of the exported student
    minus the device's (``differences``, on COMPARED); ``trained``: the device's test NDCG@10
    at least twice the untrained student's (``initial``); ``matches``: every difference within
    ``tolerance``; ``losses_finite``: every epoch's loss terms finite; ``passed``: all three."""
    differences = {key: on_cpu[key] - on_device[key] for key in COMPARED}
    trained = on_device["ndcg@10"] >= 2 * initial["ndcg@10"]
    matches = all(abs(value) <= tolerance for value in differences.values())
    finite = all(torch.isfinite(torch.as_tensor(loss)).all().item() for loss in losses)
    return {"differences": differences, "trained": trained, "matches": matches, "losses_finite": finite,
            "passed": trained and matches and finite}


def check_variant(name, model_name, overrides, args, initial):
    """One distiller trained on the device, its student exported and evaluated on the CPU."""
    from recbole_derrd import run_recbole_derrd
    from recbole_derrd.files.export import export_student

    settings = {"seed": 2020, "show_progress": False, "checkpoint_dir": args.work}
    config = dict(settings, **overrides, epochs=args.epochs, stopping_step=args.epochs,
                  gpu_id="" if args.device == "cpu" else "0", teacher_checkpoint=args.teacher_checkpoint,
                  compare_student_alone=False)
    start = time.perf_counter()
    result = run_recbole_derrd(model_name, "ml-100k", [PROTOCOL], config)
    wall = time.perf_counter() - start
    on_device = {key: float(value) for key, value in result["test_result"].items()}
    exported = export_student(result["checkpoint"])
    # RecBole's own reading of the exported file: plain torch.load, weights only
    state = torch.load(exported, map_location="cpu", weights_only=True)["state_dict"]
    on_cpu = evaluate_on_cpu(settings, state)
    losses = list(result["train_loss"].values())  # per epoch: a float, or a tuple of the loss terms
    checked = verdict(on_device, on_cpu, initial, losses, args.tolerance)
    return {
        "name": name, "model": model_name, "settings": overrides,
        "epochs": len(result["train_epoch_seconds"]),
        "epoch_s": statistics.median(result["train_epoch_seconds"]),
        "wall_s": wall,
        "train_loss": losses,
        "losses_finite": checked["losses_finite"],
        "device_test": on_device, "cpu_test_of_export": on_cpu, "differences": checked["differences"],
        "trained": checked["trained"], "matches": checked["matches"],
        "passed": checked["passed"],
    }


def markdown(report):
    info = report["machine"]
    lines = [f"# GPU check: {info.get('gpu') or info['cpu']}", "",
             f"torch {info['torch']}, Python {info['python']}, {report['date']}. Command: "
             f"`{report['command']}`", "",
             "Each distiller trained for a few epochs on the device (ml-100k, RecBole's protocol, seed "
             "2020, BPR student d = 20, one 200-d BPR teacher), then its exported student read with "
             "plain `torch.load` and evaluated on the CPU. `trained`: the device's test NDCG@10 is at "
             f"least twice the untrained student's ({report['initial']['ndcg@10']:.4f}). `matches`: "
             f"the CPU's test metrics ({', '.join(COMPARED)}) within {report['tolerance']:g} of the "
             "device's.", ""]
    if report.get("notes"):
        lines += [report["notes"], ""]
    lines += ["| distiller | epochs | s/epoch on the device | test NDCG@10 (device) | the same on the CPU | "
              "largest difference | trained | matches | passed |",
              "|---|---|---|---|---|---|---|---|---|"]
    for entry in report["variants"]:
        if "error" in entry:
            lines.append(f"| {entry['name']} | | | | | | | | no: {entry['error']} |")
            continue
        largest = max(entry["differences"].values(), key=abs)
        lines.append(
            f"| {entry['name']} | {entry['epochs']} | {entry['epoch_s']:.2f} s | "
            f"{entry['device_test']['ndcg@10']:.4f} | {entry['cpu_test_of_export']['ndcg@10']:.4f} | "
            f"{largest:+.5f} | {'yes' if entry['trained'] else 'no'} | {'yes' if entry['matches'] else 'no'} | "
            f"{'yes' if entry['passed'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description="GPU check: every distiller trains and evaluates on a CUDA "
                                     "device, and its exported student scores the same on the CPU.")
    parser.add_argument("--teacher_checkpoint", required=True, help="a 200-d BPR teacher of ml-100k (seed 2020)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--tolerance", type=float, default=2e-3)
    parser.add_argument("--variants", default=None, help="comma-separated names (default: all)")
    parser.add_argument("--work", default=os.path.join(REPO, ".bench", "gpu_check"))
    parser.add_argument("--output", default=os.path.join(REPO, "results", "gpu"))
    parser.add_argument("--notes", default="")
    args = parser.parse_args()
    if args.device != "cpu" and not torch.cuda.is_available():
        sys.exit("error: no CUDA device: this check is for a GPU machine (--device=cpu runs it on the CPU)")

    from recbole_derrd.benchmark.machine import device_label, machine_info

    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.output, exist_ok=True)
    initial = evaluate_on_cpu({"seed": 2020})
    report = {"machine": machine_info(args.device), "date": time.strftime("%Y-%m-%d"),
              "command": "python run_scripts/gpu_check.py " + " ".join(
                  arg for arg in sys.argv[1:]  # not the paths of this machine
                  if not arg.startswith(("--teacher_checkpoint", "--notes", "--work", "--output"))),
              "tolerance": args.tolerance, "initial": initial, "notes": args.notes, "variants": []}
    sys.argv = sys.argv[:1]  # RecBole's Config must not read the check's own flags as keys
    wanted = args.variants.split(",") if args.variants else None
    path = os.path.join(args.output, f"check-{device_label(args.device)}")
    for name, model_name, overrides in VARIANTS:
        if wanted and name not in wanted:
            continue
        try:
            entry = check_variant(name, model_name, overrides, args, initial)
        except Exception as error:  # one failing distiller must not hide the others' results
            traceback.print_exc()
            entry = {"name": name, "error": f"{type(error).__name__}: {error}"[:200], "passed": False}
        report["variants"].append(entry)
        print(json.dumps(entry), flush=True)
        with open(path + ".json", "w") as handle:
            json.dump(report, handle, indent=1)
        with open(path + ".md", "w") as handle:
            handle.write(markdown(report))
    print(markdown(report))
    return 0 if all(entry["passed"] for entry in report["variants"]) else 1
