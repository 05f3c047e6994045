"""
recbole_derrd.benchmark.wholerun
################################
The speed benchmark's ``wholerun`` part: whole training runs to their early stop, each in a
fresh process one after the other (the teacher once, the student alone, DE, RRD, DE-RRD, DE-RRD
at other ``de_weight_floor`` values and with the paper's schedule), kept in
``results/speed/wholerun/<device>-<dataset>.json`` as they finish, and plotted.
"""

import json
import os
import subprocess
import sys
import time

import torch

from recbole_derrd.benchmark import REPO, RESULTS
from recbole_derrd.benchmark.machine import device_label


#: ``de_weight_floor`` values of the whole-run floor sweep (the default, 1e-3, is ``DE-RRD``).
WHOLERUN_FLOORS = (0.0, 1e-6, 1e-4, 1e-2)


def wholerun_variants(paper_epochs, floors=WHOLERUN_FLOORS):
    """Whole-run variants: (name, model, config overrides, extra config files). ``student`` is
    the distillers' student (BPR, d = 20) trained alone; every distiller uses the shared
    teacher."""
    variants = [
        ("teacher", "BPR", {"embedding_size": 200}, []),
        ("student", "BPR", {"embedding_size": 20}, []),
        ("RRD", "DERRD", {"use_de": False}, []),
        ("DE", "DERRD", {"use_rrd": False}, []),
        ("DE-RRD", "DERRD", {}, []),
    ]
    variants += [(f"DE-RRD floor={floor:g}", "DERRD", {"de_weight_floor": floor}, []) for floor in floors]
    # the paper's schedule anneals over P = 1000 epochs; its first paper_epochs are timed
    variants.append(("DE-RRD paper.yaml", "DERRD", {"epochs": paper_epochs, "de_anneal_epochs": 1000},
                     ["properties/experiments/paper.yaml"]))
    return variants


def wholerun_child(spec_file):
    """One whole run (a fresh process): ``run_recbole_derrd`` with ``fit`` timed."""
    from recbole.trainer import Trainer

    from recbole_derrd import run_recbole_derrd

    with open(spec_file) as handle:
        spec = json.load(handle)
    torch.set_num_threads(spec["threads"])
    fit_seconds = []
    original_fit = Trainer.fit

    def timed_fit(trainer, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original_fit(trainer, *args, **kwargs)
        finally:
            fit_seconds.append(time.perf_counter() - start)

    Trainer.fit = timed_fit
    sys.argv = sys.argv[:1]
    start = time.perf_counter()
    result = run_recbole_derrd(spec["model"], spec["dataset"], spec["config_files"], spec["config"])
    wall = time.perf_counter() - start
    with open(spec["output"], "w") as handle:
        json.dump({
            "fit_s": fit_seconds[-1], "wall_s": wall,
            "epoch_s": result["train_epoch_seconds"],
            "diagnostics": result.get("train_epoch_diagnostics", []),
            "test": {key: float(value) for key, value in result["test_result"].items()},
            "best_valid": {key: float(value) for key, value in (result["best_valid_result"] or {}).items()},
            "checkpoint": result["checkpoint"],
        }, handle)


#: Protocol of the whole runs of a dataset: RecBole's random split for ml-100k, the fixed split
#: (``run_scripts/convert_lightgcn.py``) for the others.
WHOLERUN_PROTOCOLS = {"ml-100k": "properties/experiments/protocol_recbole.yaml"}


def bench_wholerun(dataset, device, threads, paper_epochs, variants_wanted=None, data_path=None, notes=None):
    """Every whole-run variant of ``dataset``, in fresh processes one after the other (kept in
    the JSON as they finish: a rerun skips the finished ones). ``notes``: the report's text
    about how it was run (kept from an earlier run unless given). The report's ``unfinished``
    (name: text for the table), written by hand for a run stopped from outside (a lent GPU's
    time running out), is dropped once that run finishes."""
    from recbole_derrd.benchmark.machine import machine_info

    folder = os.path.join(RESULTS, "speed", "wholerun")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{device_label(device)}-{dataset}.json")
    report = json.load(open(path)) if os.path.isfile(path) else {}
    torch.set_num_threads(threads)
    protocol = WHOLERUN_PROTOCOLS.get(dataset, "properties/experiments/protocol_fixed_split.yaml")
    report.update(machine=machine_info(device), dataset=dataset, date=time.strftime("%Y-%m-%d"),
                  protocol=protocol, seed=2020)
    if notes:
        report["notes"] = notes
    runs = report.setdefault("runs", {})
    work = os.path.join(REPO, ".bench", "wholerun", dataset)
    os.makedirs(work, exist_ok=True)
    # the student alone is its own variant: a distiller's run does not train it again
    base = {"seed": 2020, "show_progress": False, "gpu_id": "" if device == "cpu" else "0",
            "checkpoint_dir": os.path.join(work, "saved"), "compare_student_alone": False}
    if dataset not in WHOLERUN_PROTOCOLS:
        base["data_path"] = data_path
    for name, model, overrides, extra_files in wholerun_variants(paper_epochs):
        identity = {"model": model, "overrides": overrides, "files": extra_files}
        finished = runs.get(name, {}).get("spec") == identity
        if finished and not (variants_wanted and name in variants_wanted):
            continue
        if variants_wanted and name not in variants_wanted and name not in ("teacher", "student"):
            continue
        config = dict(base, **overrides)
        if model != "BPR":
            config["teacher_checkpoint"] = runs["teacher"]["checkpoint"]
        spec = {"model": model, "dataset": dataset, "threads": threads, "config": config,
                "config_files": [os.path.join(REPO, report["protocol"])]
                + [os.path.join(REPO, file) for file in extra_files],
                "output": os.path.join(work, f"{name}.result.json")}
        spec_file = os.path.join(work, f"{name}.spec.json")
        with open(spec_file, "w") as handle:
            json.dump(spec, handle)
        print(f"whole run: {name}", flush=True)
        subprocess.run([sys.executable, "-m", "recbole_derrd.benchmark.speed", f"--device={device}",
                        f"--child_wholerun={spec_file}"], check=True, cwd=work)
        with open(spec["output"]) as handle:
            runs[name] = json.load(handle)
        runs[name]["spec"] = identity
        report.get("unfinished", {}).pop(name, None)  # a run stopped earlier has now finished
        with open(path, "w") as handle:
            json.dump(report, handle, indent=1)
        print(wholerun_line(name, runs), flush=True)
    plot_wholerun(report, path[: -len(".json")] + ".png")
    return report


def wholerun_line(name, runs):
    run = runs[name]
    student = runs.get("student")
    ratio = f" ({run['fit_s'] / student['fit_s']:.1f}x)" if student else ""
    return (f"{name}: {len(run['epoch_s'])} epochs, {run['fit_s']:.0f} s{ratio}, "
            f"test NDCG@10 {run['test'].get('ndcg@10', float('nan')):.4f}")


def plot_wholerun(report, path):
    """Per-epoch training time against epoch (with DE's temperature), and experts per entity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (times, experts) = plt.subplots(1, 2, figsize=(13, 4.5))
    names = [name for name in report["runs"] if name != "teacher"]
    colours = dict(zip(names, plt.get_cmap("tab10").colors))  # one colour per run, both panels
    for name in names:
        run = report["runs"][name]
        epochs = range(len(run["epoch_s"]))
        times.plot(epochs, run["epoch_s"], label=name, linewidth=1, color=colours[name])
        if run["diagnostics"] and "active_experts" in run["diagnostics"][0]:
            experts.plot(epochs, [d["active_experts"] for d in run["diagnostics"]], label=name,
                         linewidth=1, color=colours[name])
    times.set(xlabel="epoch", ylabel="training time of the epoch (s)", yscale="log",
              title=f"{report['dataset']}: whole runs to early stop")
    taus = next((run["diagnostics"] for name, run in report["runs"].items() if name == "DE-RRD"), None)
    if taus:
        tau_axis = times.twinx()
        tau_axis.plot(range(len(taus)), [d["tau"] for d in taus], color="grey", linestyle=":",
                      label="tau (defaults)")
        tau_axis.set(ylabel="DE temperature tau (dotted)", yscale="log")
    times.legend(fontsize=7)
    experts.set(xlabel="epoch", ylabel="experts per entity (non-zero weight, after the floor)", yscale="log",
                title="DE routing")
    experts.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
