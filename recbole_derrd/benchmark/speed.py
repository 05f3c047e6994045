"""
recbole_derrd.benchmark.speed
#############################
Speed and memory of distillation (``run_scripts/bench_speed.py``), measured side by side in one
process:

    python run_scripts/bench_speed.py                       # everything, CPU
    python run_scripts/bench_speed.py --device=cuda         # the same on a GPU
    python run_scripts/bench_speed.py --parts=epoch --epoch_scales=ml-100k

Parts (results/speed/<device>.json, or <device>-<N>thread.json with ``--threads=N``; <device> is
``cpu`` or ``cuda-`` and the GPU's model; then results/speed.md is rebuilt from every JSON there):

- ``epoch``: one training epoch of DE, RRD and DE-RRD against the same student trained alone
  (BPR, d = 20, RecBole's batch size and dataloader; the 200-d BPR teacher has random weights:
  what it learned does not change the cost), on ml-100k and on synthetic data at ML-20M scale. ml-100k: whole epochs, repeated and interleaved, medians. ML-20M scale: an
  epoch is thousands of batches, so each variant trains windows of batches (interleaved), and
  an epoch is estimated as batches x median step time + the per-epoch resampling time.
- ``topn``: the teacher's top-500 of every user, chunked, at ML-20M and Amazon-Book scale
  (synthetic interactions, a 200-d BPR teacher with random weights: the time does not depend on
  training), each in a fresh process; its peak resident memory is read from the kernel from
  just before the top-N, the split and the teacher's tables already resident.
- ``sampling``: one epoch's interesting + uninteresting items for all users, at each scale.
- ``inference``: full-sort inference of all users, student (d = 20) against teacher
  (d = 200): scoring (the matrix product) and top-k selection timed apart.
- ``routing``: one DE forward + backward (M = 30 experts, 20 -> 110 -> 200, 2,000 entities)
  through every expert (dense) and over the active pairs only (sparse), with 1 to 30 experts
  active per entity: where the sparse product starts to pay, which sets
  ``DistillationExperts.sparse_work_fraction``.
- ``profile``: where the time of one annealed-phase DE-RRD training step goes (ml-100k, the
  defaults, epoch 60 of 300: tau = 0.01), with the whole run's trained DE-RRD and teacher when
  they exist: the student's own loss, DE, RRD (each forward + backward), the optimizer step and
  RecBole's batch loading, against a step of the student alone and DE's arithmetic floor (one
  expert per entity, no routing).
- ``htd``: HTD's within-group level (the teacher's and the student's cosine relations among n
  entities, the pairs of one group; forward + backward, K = 30 groups, one-hot assignment as
  after annealing) computed by the plugin's fused function against plain autograd through the
  dense formula, interleaved, at the entity counts of a batch of 2,048 interactions (ml-100k's
  users and items, Last.fm's items); and a whole side step (selection, mappings, the three
  levels) at the same sizes, early (tau = 1) and annealed (tau = 0.07).
- ``wholerun`` (not in the default parts: it takes tens of minutes on a 2-core CPU): whole
  training runs to their early stop on ml-100k (RecBole's protocol, seed 2020), each in a fresh
  process one after the other: the 200-d teacher (once, shared), the student alone, DE, RRD and
  DE-RRD with the defaults, DE-RRD with other ``de_weight_floor`` values (0 = the exact dense
  computation), and DE-RRD with the paper's schedule (``properties/experiments/paper.yaml``,
  P = 1000) for its first ``--paper_epochs`` epochs. Per epoch: training time, DE's temperature
  and the mean number of experts each entity was routed to; per run: total training time (every
  epoch and its validation, what ``fit`` takes), its ratio to the student alone's, and test
  metrics. Written to ``results/speed/wholerun/<device>-<dataset>.{json,png}``; finished runs are
  kept, so an interrupted benchmark resumes. Pin it to one core (``taskset``) and set
  ``--threads`` when anything else runs on the machine. Other datasets (``--wholerun_dataset``)
  are read as fixed splits from ``--data_path`` (``run_scripts/convert_lightgcn.py``).

    python run_scripts/bench_speed.py --parts=wholerun --threads=1
    python run_scripts/bench_speed.py --parts=wholerun --threads=1 --wholerun_dataset=lastfm \
        --wholerun_variants=RRD,DE,DE-RRD,"DE-RRD floor=0"
"""

import argparse
import json
import os
import sys
import time

import torch

from recbole_derrd.benchmark import REPO, RESULTS
from recbole_derrd.benchmark.machine import device_label
from recbole_derrd.benchmark.speed_epoch import bench_epoch
from recbole_derrd.benchmark.speed_kernels import bench_htd, bench_profile, bench_routing
from recbole_derrd.benchmark.speed_report import write_markdown
from recbole_derrd.benchmark.speed_scale import (
    SCALES, bench_inference, bench_sampling, bench_topn, topn_child,
)
from recbole_derrd.benchmark.wholerun import bench_wholerun, wholerun_child


def merge_reports(previous, report):
    """``report`` over ``previous``: a partial run replaces the entries it measured (by dataset
    or scale) and keeps the others of earlier runs on the same device."""
    merged = dict(previous, machine=report["machine"], date=report["date"])
    if report.get("notes"):  # said of the command that wrote them, not of the parts kept from earlier runs
        merged["notes"] = f"`{report['command']}`: {report['notes']}"
    commands = previous.get("commands", [previous["command"]] if "command" in previous else [])
    merged["commands"] = [c for c in commands if c != report["command"]] + [report["command"]]
    merged.pop("command", None)
    for part in ("routing", "profile", "htd"):
        if part in report:
            merged[part] = report[part]
    for part in ("epoch", "topn", "sampling", "inference"):
        if part in report:
            entries = {entry.get("dataset", entry.get("scale")): entry for entry in previous.get(part, [])}
            entries.update({entry.get("dataset", entry.get("scale")): entry for entry in report[part]})
            merged[part] = list(entries.values())
    return merged


def build_parser():
    parser = argparse.ArgumentParser(description="Speed and memory of distillation, measured side by "
                                                 "side in one process.")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--parts", default="epoch,topn,sampling,inference")
    parser.add_argument("--epoch_scales", default="ml-100k,ml-20m")
    parser.add_argument("--topn_scales", default="ml-20m,amazon-book")
    parser.add_argument("--scales", default="ml-100k,ml-20m,amazon-book",
                        help="scales of the sampling and inference parts")
    parser.add_argument("--batch_size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--window", type=int, default=40, help="batches per window (large data)")
    parser.add_argument("--topn", type=int, default=500)
    parser.add_argument("--data_path", default=os.path.join(REPO, ".bench", "dataset"))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--wholerun_dataset", default="ml-100k")
    parser.add_argument("--wholerun_variants", default=None,
                        help="comma-separated names of whole-run variants to (re)run; default: the missing ones")
    parser.add_argument("--paper_epochs", type=int, default=300)
    parser.add_argument("--notes", default=None, help="how this run was made, for its report (e.g. its machine)")
    parser.add_argument("--child_topn", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child_wholerun", default=None, help=argparse.SUPPRESS)
    return parser


def epoch_part(args):
    """The ``epoch`` part's entries: ml-100k, and synthetic data at the other scales (written
    to ``--data_path`` once)."""
    entries = []
    for scale in args.epoch_scales.split(","):
        if scale == "ml-100k":
            entry = bench_epoch("ml-100k", None, args.device, args.batch_size, args.repeats, None)
        else:
            name = f"synthetic-{scale}"
            if not os.path.isfile(os.path.join(args.data_path, name, f"{name}.inter")):
                from recbole_derrd.benchmark.synthetic import synthetic_interactions, write_atomic_files

                users, items = synthetic_interactions(*SCALES[scale], seed=0)
                write_atomic_files(args.data_path, name, users, items)
            entry = bench_epoch(name, args.data_path, args.device, args.batch_size,
                                args.repeats, args.window)
        print(json.dumps(entry, indent=1), flush=True)
        entries.append(entry)
    return entries


def measure(args, parts, report):
    """Run the ``parts`` other than ``wholerun`` into ``report``."""
    if "epoch" in parts:
        report["epoch"] = epoch_part(args)
    if "topn" in parts:
        report["topn"] = []
        for scale in args.topn_scales.split(","):
            report["topn"].append(bench_topn(scale, args.device, args.topn))
            print(json.dumps(report["topn"][-1]), flush=True)
    if "sampling" in parts:
        report["sampling"] = [bench_sampling(scale, args.device, args.topn)
                              for scale in args.scales.split(",")]
        print(json.dumps(report["sampling"], indent=1), flush=True)
    if "inference" in parts:
        report["inference"] = [bench_inference(scale, args.device) for scale in args.scales.split(",")]
        print(json.dumps(report["inference"], indent=1), flush=True)
    if "routing" in parts:
        report["routing"] = bench_routing(args.device)
    if "profile" in parts:
        report["profile"] = bench_profile(args.device)
    if "htd" in parts:
        report["htd"] = bench_htd(args.device)


def print_markdown():
    with open(os.path.join(RESULTS, "speed.md")) as handle:
        print(handle.read())


def main():
    args = build_parser().parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child_topn:
        return topn_child(args.child_topn, args.device, args.topn)
    if args.child_wholerun:
        return wholerun_child(args.child_wholerun)

    from recbole_derrd.benchmark.machine import machine_info

    parts = args.parts.split(",")
    report = {"machine": machine_info(args.device), "date": time.strftime("%Y-%m-%d"),
              "command": "python run_scripts/bench_speed.py " + " ".join(
                  argument for argument in sys.argv[1:] if not argument.startswith("--notes"))}
    if args.notes:
        report["notes"] = args.notes
    measure(args, parts, report)
    if "wholerun" in parts:
        wanted = args.wholerun_variants.split(",") if args.wholerun_variants else None
        bench_wholerun(args.wholerun_dataset, args.device, torch.get_num_threads(), args.paper_epochs,
                       wanted, args.data_path, args.notes)
        parts.remove("wholerun")
        if not parts:  # the whole-run report is its own file: rebuild the summary only
            write_markdown()
            return print_markdown()

    os.makedirs(os.path.join(RESULTS, "speed"), exist_ok=True)
    # runs with a set thread count have their own report (and section of results/speed.md)
    suffix = f"-{args.threads}thread" if args.threads else ""
    path = os.path.join(RESULTS, "speed", f"{device_label(args.device)}{suffix}.json")
    previous = {}
    if os.path.isfile(path):
        with open(path) as handle:
            previous = json.load(handle)
    with open(path, "w") as handle:
        json.dump(merge_reports(previous, report), handle, indent=1)
    write_markdown()
    print_markdown()


if __name__ == "__main__":  # the parts' child processes: python -m recbole_derrd.benchmark.speed
    main()
