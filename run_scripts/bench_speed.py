"""Speed and memory of distillation, measured side by side in one process:

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
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from recbole_derrd.benchmark.machine import device_label

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
    from recbole_derrd.files.checkpoint import CHECKPOINT_FORMAT, plain_config, save_checkpoint
    from recbole_derrd.data.dataset import split_fingerprint
    from recbole_derrd.teacher.loading import build_teacher_config
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
    from recbole_derrd import Config
    from recbole_derrd.pipeline.training import build_model, build_trainer, prepare_data

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
    start = time.perf_counter()
    train_data = prepare_data(config)[1]
    load_time = time.perf_counter() - start
    config["teacher_checkpoint"] = untrained_teacher(config, train_data.dataset)

    variants = {}
    student_config = Config("BPR", dataset, config_dict=dict(common))
    variants["student"] = build_trainer(student_config, build_model(student_config, train_data.dataset))
    build_times = {}
    for name, switches in (("DE", (True, False)), ("RRD", (False, True)), ("DE-RRD", (True, True))):
        variant_config = Config("DERRD", dataset, config_dict=dict(
            common, use_de=switches[0], use_rrd=switches[1],
            teacher_checkpoint=config["teacher_checkpoint"]))
        start = time.perf_counter()
        model = build_model(variant_config, train_data.dataset)  # loads its teacher: timed
        build_times[name] = time.perf_counter() - start
        variants[name] = build_trainer(variant_config, model)
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
    from recbole_derrd.benchmark.synthetic import synthetic_interactions

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
    from recbole_derrd.teacher.ranking import teacher_topn

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
    from recbole_derrd.teacher.ranking import UninterestingSampler, sample_interesting

    if scale == "ml-100k":
        n_users, n_items, n_interactions = 944, 1683, 80_000
        from recbole_derrd.benchmark.synthetic import synthetic_interactions

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


# --------------------------------------------------------------------------- routing


def bench_routing(device, entities=2000, num_experts=30, repeats=7):
    """Dense against sparse DE mixture (forward + backward) as the selection concentrates."""
    from recbole_derrd.model.experts import DistillationExperts

    generator = torch.Generator().manual_seed(0)
    experts = DistillationExperts(20, 200, num_experts, weight_floor=1e-3).to(device)
    student_repr = torch.randn(entities, 20, generator=generator).to(device).requires_grad_()
    teacher_repr = torch.randn(entities, 200, generator=generator).to(device)
    entries = []
    for active in (30, 20, 15, 10, 5, 3, 2, 1):
        # ``active`` experts per entity, chosen at random, random positive weights
        chosen = torch.rand(entities, num_experts, generator=generator).argsort(dim=1)[:, :active]
        weights = torch.zeros(entities, num_experts).scatter_(
            1, chosen, torch.rand(entities, active, generator=generator) + 0.1)
        selection = (weights / weights.sum(dim=1, keepdim=True)).to(device).requires_grad_()
        per_expert = (selection > 0).sum(dim=0)
        tile_rows = experts.tile_rows(per_expert)
        tiles = (per_expert + tile_rows - 1) // tile_rows
        entry = {"active_experts": active, "tile_rows": tile_rows,
                 "padded_work_fraction": float(tiles.sum()) * tile_rows / (entities * num_experts)}
        for routing in ("dense", "sparse"):
            experts.routing = routing

            def step():
                loss = ((teacher_repr - experts.reconstruct(student_repr, selection)) ** 2).sum()
                loss.backward()

            step()  # warm-up
            entry[f"{routing}_s"] = statistics.median(timed(step, device)[0] for _ in range(repeats))
        entry["sparse_over_dense"] = entry["sparse_s"] / entry["dense_s"]
        entries.append(entry)
        print(json.dumps(entry), flush=True)
    return {"entities": entities, "num_experts": num_experts,
            "sparse_work_fraction": experts.sparse_work_fraction, "entries": entries}


# --------------------------------------------------------------------------- htd


def dense_within_level(teacher_repr, student_repr, assignment, reduction="mean"):
    """HTD's within-group level as plain autograd computes it (the reference of ``bench_htd``,
    the plugin's computation before its fused function)."""
    from recbole_derrd.model.htd import cosine_relations, off_diagonal, reduce_relations

    difference = (cosine_relations(teacher_repr) - cosine_relations(student_repr)).pow(2)
    weights = (assignment @ assignment.T) * off_diagonal(len(teacher_repr), teacher_repr.device)
    return reduce_relations(difference, weights, reduction)


def interleaved_medians(steps, device, repeats):
    """Median time of each of ``steps`` (name -> function), run in turns whose order alternates;
    a first turn of each is a warm-up."""
    times = {name: [] for name in steps}
    for name, step in steps.items():
        step()
    for repeat in range(repeats):
        for name in (list(steps) if repeat % 2 == 0 else list(steps)[::-1]):
            times[name].append(timed(steps[name], device)[0])
    return {name: statistics.median(values) for name, values in times.items()}


def bench_htd(device, sizes=(700, 1400, 3000), num_groups=30, repeats=7):
    """The fused within-group level against autograd's, alone and within a whole HTD side step."""
    from unittest import mock

    from recbole_derrd.model import htd
    from recbole_derrd.model.htd import TopologyGroups, group_assignment, masked_relation_loss

    generator = torch.Generator().manual_seed(0)
    entries = []
    for entities in sizes:
        teacher_repr = torch.randn(entities, 200, generator=generator).to(device)
        mapped_repr = torch.randn(entities, 200, generator=generator).to(device).requires_grad_()
        logits = torch.randn(entities, num_groups, generator=generator).to(device).requires_grad_()
        assignment = group_assignment(logits, tau=0.07)[0]  # shared: its graph is retained
        within = interleaved_medians({
            "fused": lambda: masked_relation_loss(teacher_repr, mapped_repr, assignment, "mean").backward(
                retain_graph=True),
            "autograd": lambda: dense_within_level(teacher_repr, mapped_repr, assignment).backward(
                retain_graph=True),
        }, device, repeats)
        entry = {"entities": entities, "num_groups": num_groups,
                 "within_fused_s": within["fused"], "within_autograd_s": within["autograd"],
                 "within_speedup": within["autograd"] / within["fused"]}
        groups = TopologyGroups(20, 200, num_groups, weight_floor=1e-3).to(device)
        student_repr = torch.randn(entities, 20, generator=generator).to(device).requires_grad_()
        for tau in (1.0, 0.07):
            def side_step():
                groups(student_repr, teacher_repr, tau, 0.5, "mean")[0].backward()

            def autograd_side_step():
                with mock.patch.object(htd, "masked_relation_loss", dense_within_level):
                    side_step()

            side = interleaved_medians({"fused": side_step, "autograd": autograd_side_step}, device, repeats)
            entry[f"side_step_tau{tau:g}_s"] = side["fused"]
            entry[f"side_step_tau{tau:g}_autograd_s"] = side["autograd"]
        entries.append(entry)
        print(json.dumps(entry), flush=True)
    return {"entries": entries}


# --------------------------------------------------------------------------- profile


def bench_profile(device, steps=40, epoch=60):
    """Median milliseconds per training step of each part of an annealed-phase DE-RRD step."""
    from itertools import islice

    from recbole_derrd import Config
    from recbole_derrd.files.checkpoint import read_checkpoint
    from recbole_derrd.model.experts import DistillationExperts
    from recbole_derrd.pipeline.training import build_model, build_trainer, prepare_data

    wholerun = os.path.join(RESULTS, "speed", "wholerun", f"{device_label(device)}-ml-100k.json")
    runs = json.load(open(wholerun))["runs"] if os.path.isfile(wholerun) else {}
    common = {"gpu_id": "" if device == "cpu" else "0", "show_progress": False, "state": "ERROR",
              "checkpoint_dir": os.path.join(REPO, ".bench", "saved"), "seed": 2020}
    files = [os.path.join(REPO, WHOLERUN_PROTOCOLS["ml-100k"])]
    sys.argv = sys.argv[:1]
    config = Config("DERRD", "ml-100k", files, dict(common))
    train_data = prepare_data(config)[1]
    trained = "teacher" in runs and "DE-RRD" in runs
    config["teacher_checkpoint"] = (runs["teacher"]["checkpoint"] if trained
                                    else untrained_teacher(config, train_data.dataset))
    model = build_model(config, train_data.dataset)
    if trained:
        model.load_state_dict(read_checkpoint(runs["DE-RRD"]["checkpoint"])["state_dict"])
    trainer = build_trainer(config, model)
    student_config = Config("BPR", "ml-100k", files, dict(common, embedding_size=20))
    student = build_model(student_config, train_data.dataset)
    student_trainer = build_trainer(student_config, student)
    model.start_epoch(epoch)
    model.train()
    batches = [batch.to(config["device"]) for batch in islice(train_data, steps)]
    single = DistillationExperts(20, 200, 1, "single").to(config["device"])

    def de_floor(batch, users):
        # one expert of the paper's size per entity: users + unique positive and negative items
        entities = len(users) + len(torch.unique(torch.cat(model.batch_items(batch))))
        single(torch.randn(entities, 20, device=batch[model.USER_ID].device),
               torch.randn(entities, 200, device=batch[model.USER_ID].device), 1.0).sum().backward()

    def nothing(batch, users):
        return None

    def full_backward(batch, users):
        sum(model.calculate_loss(batch)).backward()

    # name: (untimed preparation, timed work), each called with (batch, unique users)
    parts = {
        "DE-RRD step (loss, backward, optimizer)": (
            nothing, lambda batch, users: (full_backward(batch, users), trainer.optimizer.step())),
        "student loss (BPR), forward + backward": (
            nothing, lambda batch, users: model.base_loss(batch).backward()),
        "DE, forward + backward": (nothing, lambda batch, users: model.de_term(batch, users).backward()),
        "RRD, forward + backward": (nothing, lambda batch, users: model.rrd_term(users).backward()),
        "optimizer step (fused Adam, student + experts)": (
            full_backward, lambda batch, users: trainer.optimizer.step()),
        "student alone step (RecBole BPR, d = 20)": (
            nothing, lambda batch, users: (student.calculate_loss(batch).backward(),
                                           student_trainer.optimizer.step())),
        "DE floor: one expert per entity, no routing": (nothing, de_floor),
    }
    entry = {"epoch": epoch, "tau": model.selection_tau, "trained_model": trained, "steps": steps, "ms": {}}
    for name, (prepare, work) in parts.items():
        times = []
        for batch in batches:
            users = torch.unique(batch[model.USER_ID])
            trainer.optimizer.zero_grad()
            student_trainer.optimizer.zero_grad()
            prepare(batch, users)
            times.append(timed(lambda: work(batch, users), device)[0])
        entry["ms"][name] = statistics.median(times) * 1000
    start = time.perf_counter()
    loaded = sum(1 for _ in train_data)
    entry["ms"]["RecBole batch loading (negative sampling)"] = (time.perf_counter() - start) / loaded * 1000
    entry["active_experts"] = model.epoch_diagnostics()["active_experts"]
    print(json.dumps(entry, indent=1), flush=True)
    return entry


# --------------------------------------------------------------------------- whole runs

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
        subprocess.run([sys.executable, os.path.abspath(__file__), f"--device={device}",
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
        if report.get("routing"):
            routing = report["routing"]
            lines += [f"### DE mixture, dense vs sparse (forward + backward, {routing['entities']:,} entities, "
                      f"M = {routing['num_experts']})", "",
                      "`de_routing: auto` goes sparse when the padded work is at most "
                      f"{routing['sparse_work_fraction']:.0%} of the dense work.", "",
                      "| experts per entity | rows per tile | padded work / dense work | dense | sparse | sparse / dense |",
                      "|---|---|---|---|---|---|"]
            for entry in routing["entries"]:
                lines.append(f"| {entry['active_experts']} | {entry['tile_rows']} | {entry['padded_work_fraction']:.2f} | "
                             f"{entry['dense_s'] * 1000:.1f} ms | {entry['sparse_s'] * 1000:.1f} ms | "
                             f"{entry['sparse_over_dense']:.2f} |")
            lines.append("")
        if report.get("htd"):
            lines += ["### HTD: the within-group level, fused against autograd (forward + backward)", "",
                      "One-hot assignment to K = 30 groups, 200-d teacher space; medians, the two "
                      "computations in alternating turns. Side step: one side's whole HTD term "
                      "(selection, mappings with `htd_weight_floor` 1e-3, the three levels), early and "
                      "after annealing, with the fused level (the plugin's) and with autograd's.", "",
                      "| entities | level: autograd | level: fused | speed-up | side step, tau = 1: autograd / fused "
                      "| side step, tau = 0.07: autograd / fused |",
                      "|---|---|---|---|---|---|"]
            for entry in report["htd"]["entries"]:
                sides = " | ".join(
                    f"{entry[f'side_step_tau{tau}_autograd_s'] * 1000:.1f} / {entry[f'side_step_tau{tau}_s'] * 1000:.1f} ms "
                    f"({entry[f'side_step_tau{tau}_autograd_s'] / entry[f'side_step_tau{tau}_s']:.2f}x)"
                    for tau in ("1", "0.07"))
                lines.append(f"| {entry['entities']:,} | {entry['within_autograd_s'] * 1000:.1f} ms | "
                             f"{entry['within_fused_s'] * 1000:.1f} ms | {entry['within_speedup']:.2f}x | {sides} |")
            lines.append("")
        if report.get("profile"):
            profile = report["profile"]
            lines += [f"### Where an annealed-phase DE-RRD step goes (ml-100k, epoch {profile['epoch']}, "
                      f"tau = {profile['tau']:.2g}, {profile['active_experts']:.2f} experts per entity"
                      + (", the whole run's trained model" if profile["trained_model"] else ", untrained")
                      + ")", "",
                      f"Median over {profile['steps']} batches of 2,048 interactions.", "",
                      "| part | ms per step |", "|---|---|"]
            lines += [f"| {name} | {value:.1f} |" for name, value in profile["ms"].items()]
            lines.append("")
    lines += wholerun_markdown(os.path.join(folder, "wholerun"))
    with open(os.path.join(RESULTS, "speed.md"), "w") as handle:
        handle.write("\n".join(lines))


def wholerun_markdown(folder):
    """The whole-run section of results/speed.md: one row per dataset and device."""
    if not os.path.isdir(folder):
        return []
    reports = [json.load(open(os.path.join(folder, name))) for name in sorted(os.listdir(folder))
               if name.endswith(".json")]
    if not reports:
        return []
    columns = ["student", "RRD", "DE", "DE-RRD", "DE-RRD floor=0", "DE-RRD paper.yaml"]
    lines = ["## Whole training runs to early stop, relative to the student trained alone", "",
             "Total training time of each run (every epoch and its validation: what `fit` takes), "
             "and its ratio to the student alone's; epochs trained in brackets. Each run in a fresh "
             "process, one after the other. DE-RRD uses the defaults (`de_weight_floor: 1e-3`, "
             "`de_routing: auto`); `floor=0` is the exact dense computation; `paper.yaml` is the "
             "paper's schedule (sums, batch 1024, P = 1000), its first epochs only. "
             "Per-epoch figures and plots: `results/speed/wholerun/`.", "",
             "| data | device | " + " | ".join(columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for report in reports:
        runs, info = report["runs"], report["machine"]
        flags = ", ".join(info.get("cpu_flags", [])) or "none of avx512f / amx"
        device = info.get("gpu") or f"{info['cpu']} ({flags}), {info['threads']} torch thread(s)"
        student = runs.get("student")
        cells = []
        for name in columns:
            run = runs.get(name)
            if run is None or student is None:
                # a run stopped before its early stop (e.g. out of a lent GPU's time) says so
                cells.append(report.get("unfinished", {}).get(name, "not run"))
                continue
            cells.append(f"{run['fit_s']:.0f} s ({run['fit_s'] / student['fit_s']:.1f}x) "
                         f"[{len(run['epoch_s'])}]")
        lines.append(f"| {report['dataset']} | {device} | " + " | ".join(cells) + " |")
    lines.append("")
    for report in reports:
        runs = report["runs"]
        first = {name: run["epoch_s"][0] for name, run in runs.items() if run["epoch_s"]}
        lines += [f"### {report['dataset']}, {report['machine'].get('gpu') or report['machine']['cpu']}: every run", "",
                  "| run | epochs | total | ratio to student | epoch 0 | slowest epoch / epoch 0 | median epoch | experts per entity, last epoch | test NDCG@10 | test Recall@10 |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        if report.get("notes"):
            lines[-2:-2] = [report["notes"], ""]
        for name, run in runs.items():
            ratio = run["fit_s"] / runs["student"]["fit_s"] if "student" in runs else float("nan")
            experts = run["diagnostics"][-1].get("active_experts") if run["diagnostics"] else None
            lines.append(
                f"| {name} | {len(run['epoch_s'])} | {run['fit_s']:.1f} s | {ratio:.2f}x | "
                f"{first[name]:.2f} s | {max(run['epoch_s']) / first[name]:.2f} | "
                f"{statistics.median(run['epoch_s']):.2f} s | "
                f"{'' if experts is None else format(experts, '.2f')} | "
                f"{run['test'].get('ndcg@10', float('nan')):.4f} | {run['test'].get('recall@10', float('nan')):.4f} |")
        lines.append("")
    return lines


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
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--wholerun_dataset", default="ml-100k")
    parser.add_argument("--wholerun_variants", default=None,
                        help="comma-separated names of whole-run variants to (re)run; default: the missing ones")
    parser.add_argument("--paper_epochs", type=int, default=300)
    parser.add_argument("--notes", default=None, help="how this run was made, for its report (e.g. its machine)")
    parser.add_argument("--child_topn", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child_wholerun", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
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
    if "epoch" in parts:
        report["epoch"] = []
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
    if "routing" in parts:
        report["routing"] = bench_routing(args.device)
    if "profile" in parts:
        report["profile"] = bench_profile(args.device)
    if "htd" in parts:
        report["htd"] = bench_htd(args.device)
    if "wholerun" in parts:
        wanted = args.wholerun_variants.split(",") if args.wholerun_variants else None
        bench_wholerun(args.wholerun_dataset, args.device, torch.get_num_threads(), args.paper_epochs,
                       wanted, args.data_path, args.notes)
        parts.remove("wholerun")
        if not parts:  # the whole-run report is its own file: rebuild the summary only
            write_markdown()
            return print(open(os.path.join(RESULTS, "speed.md")).read())

    os.makedirs(os.path.join(RESULTS, "speed"), exist_ok=True)
    # runs with a set thread count have their own report (and section of results/speed.md)
    suffix = f"-{args.threads}thread" if args.threads else ""
    path = os.path.join(RESULTS, "speed", f"{device_label(args.device)}{suffix}.json")
    previous = json.load(open(path)) if os.path.isfile(path) else {}
    with open(path, "w") as handle:
        json.dump(merge_reports(previous, report), handle, indent=1)
    write_markdown()
    print(open(os.path.join(RESULTS, "speed.md")).read())


if __name__ == "__main__":
    main()
