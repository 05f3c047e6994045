"""Speed and memory of distillation, measured side by side in one process:

    python run_scripts/bench_speed.py                       # everything, CPU
    python run_scripts/bench_speed.py --device=cuda         # the same on a GPU
    python run_scripts/bench_speed.py --parts=epoch --epoch_scales=ml-100k

Parts (results/speed/<device>.json, then results/speed.md is rebuilt from every JSON there):

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
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "results")

#: Synthetic scales: (users, items, interactions).
SCALES = {
    "ml-20m": (138_000, 27_000, 20_000_000),
    "amazon-book": (110_000, 96_000, 3_000_000),
}


def synchronize(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(function, device):
    synchronize(device)
    start = time.perf_counter()
    result = function()
    synchronize(device)
    return time.perf_counter() - start, result


# --------------------------------------------------------------------------- epoch


def untrained_teacher(config, train_dataset):
    """A 200-d BPR teacher checkpoint with random weights for this split: the timing of
    distillation does not depend on what the teacher learned, and training one at ML-20M scale
    costs more than the whole benchmark."""
    from recbole_derrd.checkpoint import CHECKPOINT_FORMAT, plain_config, save_checkpoint
    from recbole_derrd.data import split_fingerprint
    from recbole_derrd.teacher import build_teacher_config
    from recbole_derrd.utils import get_model

    teacher_config = build_teacher_config(config)
    fingerprint = split_fingerprint(train_dataset)
    path = os.path.join(config["checkpoint_dir"], f"untrained-teacher-{config['dataset']}-{fingerprint}.pth")
    if not os.path.isfile(path):
        model = get_model(teacher_config["model"])(teacher_config, train_dataset)
        save_checkpoint({"format": CHECKPOINT_FORMAT, "model": teacher_config["model"],
                         "config": plain_config(teacher_config), "state_dict": model.state_dict(),
                         "other_parameter": {}, "split_fingerprint": fingerprint}, path)
    return path


def epoch_setup(dataset, data_path, device, batch_size):
    """Config, data, an untrained teacher and the four models with their trainers."""
    from recbole.utils import init_seed

    from recbole_derrd import DERRD, Config, get_trainer
    from recbole_derrd.data import create_dataset, data_preparation
    from recbole_derrd.utils import get_model

    common = {
        "gpu_id": "" if device == "cpu" else "0",
        "show_progress": False,
        "state": "ERROR",
        "checkpoint_dir": os.path.join(REPO, ".bench", "saved"),
        "train_batch_size": batch_size,
        "embedding_size": 20,
    }
    if data_path:
        common["data_path"] = data_path
    sys.argv = sys.argv[:1]
    config = Config("DERRD", dataset, config_dict=common)
    init_seed(config["seed"], config["reproducibility"])
    start = time.perf_counter()
    train_data = data_preparation(config, create_dataset(config))[0]
    load_time = time.perf_counter() - start
    config["teacher_checkpoint"] = untrained_teacher(config, train_data.dataset)

    variants = {}
    student_config = Config("BPR", dataset, config_dict=dict(common))
    student = get_model("BPR")(student_config, train_data.dataset).to(config["device"])
    variants["student"] = get_trainer(student_config["MODEL_TYPE"], "BPR")(student_config, student)
    build_times = {}
    for name, switches in (("DE", (True, False)), ("RRD", (False, True)), ("DE-RRD", (True, True))):
        variant_config = Config("DERRD", dataset, config_dict=dict(
            common, use_de=switches[0], use_rrd=switches[1],
            teacher_checkpoint=config["teacher_checkpoint"]))
        start = time.perf_counter()
        model = DERRD(variant_config, train_data.dataset).to(config["device"])
        build_times[name] = time.perf_counter() - start
        variants[name] = get_trainer(variant_config["MODEL_TYPE"], "DERRD")(variant_config, model)
    return train_data, variants, {"load_s": load_time, "model_build_s": build_times}


def step_times(trainer, train_data, batches, epoch, device):
    """Per-step wall times of ``batches`` training steps (data loading included), as in
    RecBole's ``_train_epoch``."""
    model = trainer.model
    model.train()
    times = []
    iterator = iter(train_data)
    synchronize(device)
    last = time.perf_counter()
    for _ in range(batches):
        interaction = next(iterator).to(trainer.device)
        trainer.optimizer.zero_grad()
        losses = model.calculate_loss(interaction)
        loss = sum(losses) if isinstance(losses, tuple) else losses
        loss.backward()
        trainer.optimizer.step()
        synchronize(device)
        now = time.perf_counter()
        times.append(now - last)
        last = now
    return times


def bench_epoch(dataset, data_path, device, batch_size, repeats, window):
    train_data, variants, setup = epoch_setup(dataset, data_path, device, batch_size)
    n_batches = len(train_data)
    result = {"dataset": dataset, "batches_per_epoch": n_batches, "batch_size": batch_size,
              "interactions": len(train_data.dataset), **setup}
    resample = {name: [] for name in variants if name != "student"}
    epochs = {name: [] for name in variants}
    steps = {name: [] for name in variants}
    whole_epochs = window is None or window >= n_batches
    for repeat in range(repeats):
        for name, trainer in variants.items():  # interleaved: drifts hit every variant alike
            if whole_epochs:  # the epoch's resampling (in _train_epoch) is timed with it
                seconds, _ = timed(lambda: trainer._train_epoch(train_data, repeat + 1), device)
                epochs[name].append(seconds)
                if name != "student":  # and once more apart (a new epoch index), for the table
                    seconds, _ = timed(lambda: trainer.model.start_epoch(1000 + repeat), device)
                    resample[name].append(seconds)
            else:
                if name != "student":
                    seconds, _ = timed(lambda: trainer.model.start_epoch(repeat + 1), device)
                    resample[name].append(seconds)
                steps[name].extend(step_times(trainer, train_data, window, repeat + 1, device)[1:])
    result["method"] = "whole epochs" if whole_epochs else f"{repeats} windows of {window} batches"
    result["variants"] = {}
    for name in variants:
        fixed = statistics.median(resample[name]) if name in resample else 0.0
        if whole_epochs:
            epoch_time = statistics.median(epochs[name])  # includes the resampling
        else:
            epoch_time = n_batches * statistics.median(steps[name]) + fixed
        result["variants"][name] = {
            "epoch_s": epoch_time,
            "resample_s": fixed,
            "step_ms": 1000 * (epoch_time - fixed) / n_batches,
        }
    base = result["variants"]["student"]["epoch_s"]
    for entry in result["variants"].values():
        entry["ratio"] = entry["epoch_s"] / base
    return result


# --------------------------------------------------------------------------- top-N / sampling


def synthetic_split(scale, seed=0):
    """CSR training split at ``scale`` (RecBole's padding id 0 included), generated once and
    kept under .bench/splits (every part and child process reads the same split)."""
    from recbole_derrd.synthetic import synthetic_interactions

    cache = os.path.join(REPO, ".bench", "splits", f"{scale}-{seed}.npz")
    if os.path.isfile(cache):
        stored = np.load(cache)
        return (int(stored["n_users"]), int(stored["n_items"]),
                torch.from_numpy(stored["indptr"]), torch.from_numpy(stored["items"]))
    n_users, n_items, n_interactions = SCALES[scale]
    users, items = synthetic_interactions(n_users, n_items, n_interactions, seed=seed)
    n_users, n_items = n_users + 1, n_items + 1  # RecBole's padding id 0
    users, items = users + 1, items + 1
    order = np.lexsort((items, users))
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
    items = items[order].astype(np.int64)
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    np.savez(cache, n_users=n_users, n_items=n_items, indptr=indptr, items=items)
    return n_users, n_items, torch.from_numpy(indptr), torch.from_numpy(items)


def memory_mb(field):
    """``VmRSS`` (resident now) or ``VmHWM`` (peak since the last reset) of this process, in MB.
    (``getrusage``'s maxrss would count the parent's memory at fork.)"""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_memory():
    """Make ``VmHWM`` start again from the current resident size (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def topn_child(scale, device, topn):
    """Runs in a fresh process: the teacher's top-N at ``scale``; prints JSON. The peak memory
    is measured from just before the top-N (the synthetic split and the teacher are resident)."""
    from recbole_derrd.ranking import teacher_topn

    n_users, n_items, indptr, items = synthetic_split(scale)
    generator = torch.Generator().manual_seed(0)
    user_table = (torch.randn(n_users, 200, generator=generator) * 0.1).to(device)
    item_table = (torch.randn(n_items, 200, generator=generator) * 0.1).to(device)
    reset_peak_memory()
    resident = memory_mb("VmRSS")
    chunk_users = max(1, 16777216 // n_items)  # the default teacher_score_batch_size
    seconds, result = timed(lambda: teacher_topn(
        lambda users: user_table[users] @ item_table.T, n_users, n_items, indptr, items,
        topn, chunk_users, device, show_progress=True), device)
    report = {"scale": scale, "users": n_users - 1, "items": n_items - 1,
              "interactions": int(len(items)), "topn": topn, "chunk_users": chunk_users,
              "seconds": seconds, "peak_rss_mb": memory_mb("VmHWM"), "rss_before_topn_mb": resident,
              "result_mb": result.numel() * 8 / 2**20}
    if torch.device(device).type == "cuda":
        report["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print("RESULT " + json.dumps(report))


def bench_topn(scale, device, topn):
    completed = subprocess.run(
        [sys.executable, __file__, "--child_topn", scale, "--device", device, "--topn", str(topn)],
        capture_output=True, text=True, check=True,
    )
    line = [row for row in completed.stdout.splitlines() if row.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def bench_sampling(scale, device, topn, repeats=3):
    from recbole_derrd.ranking import UninterestingSampler, sample_interesting

    if scale == "ml-100k":
        n_users, n_items, n_interactions = 944, 1683, 80_000
        from recbole_derrd.synthetic import synthetic_interactions

        users, items = synthetic_interactions(943, 1682, n_interactions, seed=0)
        users, items = users + 1, items + 1
        order = np.lexsort((items, users))
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
        indptr, items = torch.from_numpy(indptr), torch.from_numpy(items[order].astype(np.int64))
    else:
        n_users, n_items, indptr, items = synthetic_split(scale)
    # a top-N disjoint from the training items: the N free items of highest random score
    generator = torch.Generator().manual_seed(1)
    top = torch.empty(n_users, topn, dtype=torch.long)
    for start in range(0, n_users, 2048):
        end = min(start + 2048, n_users)
        scores = torch.rand(end - start, n_items, generator=generator)
        scores[:, 0] = -1
        rows = torch.repeat_interleave(torch.arange(end - start), indptr[start + 1:end + 1] - indptr[start:end])
        scores[rows, items[indptr[start]:indptr[end]]] = -1
        top[start:end] = scores.topk(topn, dim=1).indices
    build, sampler = timed(lambda: UninterestingSampler(indptr, items, top.to(device), n_items, device=device), device)
    epoch_generator = torch.Generator(device=device).manual_seed(2)
    interesting, uninteresting = [], []
    for _ in range(repeats):
        interesting.append(timed(lambda: sample_interesting(n_users, topn, 40, 10.0, epoch_generator), device)[0])
        uninteresting.append(timed(lambda: sampler.sample(40, epoch_generator), device)[0])
    return {"scale": scale, "users": n_users - 1, "items": n_items - 1, "topn": topn,
            "sampler_build_s": build, "interesting_s": statistics.median(interesting),
            "uninteresting_s": statistics.median(uninteresting),
            "excluded_pairs": int(sampler.gap_keys.numel())}


# --------------------------------------------------------------------------- inference


def bench_inference(scale, device, repeats=5, k=20, chunk_cells=16777216):
    if scale == "ml-100k":
        n_users, n_items = 944, 1683
    else:
        n_users, n_items = SCALES[scale][0] + 1, SCALES[scale][1] + 1
    generator = torch.Generator().manual_seed(0)
    result = {"scale": scale, "users": n_users - 1, "items": n_items - 1, "k": k}
    chunk = max(1, chunk_cells // n_items)
    for name, dim in (("student", 20), ("teacher", 200)):
        users = torch.randn(n_users, dim, generator=generator).to(device)
        items = torch.randn(n_items, dim, generator=generator).to(device)
        scoring, selection = [], []
        for _ in range(repeats):
            score_time = select_time = 0.0
            for start in range(0, n_users, chunk):
                seconds, scores = timed(lambda: users[start:start + chunk] @ items.T, device)
                score_time += seconds
                seconds, _ = timed(lambda: scores.topk(k, dim=1), device)
                select_time += seconds
            scoring.append(score_time)
            selection.append(select_time)
        result[name] = {"dim": dim, "scoring_s": statistics.median(scoring),
                        "topk_s": statistics.median(selection)}
        result[name]["total_s"] = result[name]["scoring_s"] + result[name]["topk_s"]
    result["speedup_total"] = result["teacher"]["total_s"] / result["student"]["total_s"]
    result["speedup_scoring"] = result["teacher"]["scoring_s"] / result["student"]["scoring_s"]
    return result


# --------------------------------------------------------------------------- report


def write_markdown():
    """Rebuild results/speed.md from every results/speed/*.json."""
    folder = os.path.join(RESULTS, "speed")
    reports = [json.load(open(os.path.join(folder, name))) for name in sorted(os.listdir(folder))
               if name.endswith(".json")]
    lines = ["# Speed and memory", "",
             "Written by `python run_scripts/bench_speed.py` (see its docstring for what each part",
             "measures). Medians; ratios are measured side by side in one process. One section per",
             "device that ran the script.", ""]
    for report in reports:
        info = report["machine"]
        where = info.get("gpu") or f"{info['cpu']}, {info['cores']} cores, {info['threads']} torch threads"
        lines += [f"## {info['device']}: {where}", "",
                  f"torch {info['torch']}, Python {info['python']}, {report['date']}. Commands: "
                  + "; ".join(f"`{command}`" for command in report.get("commands") or [report["command"]]), ""]
        if report.get("notes"):
            lines += [report["notes"], ""]
        if report.get("epoch"):
            lines += ["### One training epoch, relative to the student trained alone", "",
                      "| data | how | batches | student | DE | RRD | DE-RRD | resampling (DE-RRD) |",
                      "|---|---|---|---|---|---|---|---|"]
            for entry in report["epoch"]:
                v = entry["variants"]
                lines.append(
                    f"| {entry['dataset']} ({entry['interactions']:,} train) | {entry['method']} | "
                    f"{entry['batches_per_epoch']:,} x {entry['batch_size']} | "
                    f"{v['student']['epoch_s']:.2f} s | "
                    + " | ".join(f"{v[name]['epoch_s']:.2f} s ({v[name]['ratio']:.2f}x)"
                                 for name in ("DE", "RRD", "DE-RRD"))
                    + f" | {v['DE-RRD']['resample_s']:.3f} s |")
            lines.append("")
        if report.get("topn"):
            lines += ["### Teacher top-500 of every user (chunked, 200-d BPR teacher)", "",
                      "| scale | users x items | chunk (users) | time | peak resident memory during the top-N | resident before (split, teacher) | result tensor |",
                      "|---|---|---|---|---|---|---|"]
            for entry in report["topn"]:
                gpu = f", GPU peak {entry['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in entry else ""
                lines.append(
                    f"| {entry['scale']} | {entry['users']:,} x {entry['items']:,} | "
                    f"{entry['chunk_users']} | {entry['seconds']:.1f} s | "
                    f"{entry['peak_rss_mb']:.0f} MB{gpu} | {entry['rss_before_topn_mb']:.0f} MB | "
                    f"{entry['result_mb']:.0f} MB |")
            lines.append("")
        if report.get("sampling"):
            lines += ["### One epoch of RRD sampling for all users (K = L = 40, N = 500)", "",
                      "| scale | users x items | sampler build (once) | interesting | uninteresting | excluded pairs held |",
                      "|---|---|---|---|---|---|"]
            for entry in report["sampling"]:
                lines.append(
                    f"| {entry['scale']} | {entry['users']:,} x {entry['items']:,} | "
                    f"{entry['sampler_build_s']:.2f} s | {entry['interesting_s']:.3f} s | "
                    f"{entry['uninteresting_s']:.3f} s | {entry['excluded_pairs']:,} |")
            lines.append("")
        if report.get("inference"):
            lines += ["### Full-sort inference of all users: student (d = 20) vs teacher (d = 200)", "",
                      "| scale | student scoring | student top-20 | teacher scoring | teacher top-20 | speed-up (scoring) | speed-up (total) |",
                      "|---|---|---|---|---|---|---|"]
            for entry in report["inference"]:
                s, t = entry["student"], entry["teacher"]
                lines.append(
                    f"| {entry['scale']} ({entry['users']:,} x {entry['items']:,}) | "
                    f"{s['scoring_s']:.3f} s | {s['topk_s']:.3f} s | {t['scoring_s']:.3f} s | "
                    f"{t['topk_s']:.3f} s | {entry['speedup_scoring']:.1f}x | {entry['speedup_total']:.1f}x |")
            lines.append("")
    with open(os.path.join(RESULTS, "speed.md"), "w") as handle:
        handle.write("\n".join(lines))


def merge_reports(previous, report):
    """``report`` over ``previous``: a partial run replaces the entries it measured (by dataset
    or scale) and keeps the others of earlier runs on the same device."""
    merged = dict(previous, machine=report["machine"], date=report["date"])
    commands = previous.get("commands", [previous["command"]] if "command" in previous else [])
    merged["commands"] = [c for c in commands if c != report["command"]] + [report["command"]]
    merged.pop("command", None)
    for part in ("epoch", "topn", "sampling", "inference"):
        if part in report:
            entries = {entry.get("dataset", entry.get("scale")): entry for entry in previous.get(part, [])}
            entries.update({entry.get("dataset", entry.get("scale")): entry for entry in report[part]})
            merged[part] = list(entries.values())
    return merged


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    parser.add_argument("--child_topn", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_topn:
        return topn_child(args.child_topn, args.device, args.topn)

    from recbole_derrd.utils import machine_info

    parts = args.parts.split(",")
    report = {"machine": machine_info(args.device), "date": time.strftime("%Y-%m-%d"),
              "command": "python run_scripts/bench_speed.py " + " ".join(sys.argv[1:])}
    if "epoch" in parts:
        report["epoch"] = []
        for scale in args.epoch_scales.split(","):
            if scale == "ml-100k":
                entry = bench_epoch("ml-100k", None, args.device, args.batch_size, args.repeats, None)
            else:
                name = f"synthetic-{scale}"
                if not os.path.isfile(os.path.join(args.data_path, name, f"{name}.inter")):
                    from recbole_derrd.synthetic import synthetic_interactions, write_atomic_files

                    users, items = synthetic_interactions(*SCALES[scale], seed=0)
                    write_atomic_files(args.data_path, name, users, items)
                entry = bench_epoch(name, args.data_path, args.device, args.batch_size,
                                    args.repeats, args.window)
            print(json.dumps(entry, indent=1), flush=True)
            report["epoch"].append(entry)
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

    os.makedirs(os.path.join(RESULTS, "speed"), exist_ok=True)
    path = os.path.join(RESULTS, "speed", f"{torch.device(args.device).type}.json")
    previous = json.load(open(path)) if os.path.isfile(path) else {}
    with open(path, "w") as handle:
        json.dump(merge_reports(previous, report), handle, indent=1)
    write_markdown()
    print(open(os.path.join(RESULTS, "speed.md")).read())


if __name__ == "__main__":
    main()
