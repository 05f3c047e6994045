"""
recbole_derrd.benchmark.speed_scale
###################################
The speed benchmark's parts at the scale of large datasets, on synthetic splits: the teacher's
top-N of every user (``topn``, in a fresh process, its peak memory read from the kernel), one
epoch of RRD's sampling (``sampling``) and full-sort inference of student against teacher
(``inference``).
"""

import json
import os
import statistics
import subprocess
import sys

import numpy as np
import torch

from recbole_derrd.benchmark import REPO
from recbole_derrd.benchmark.speed_timing import memory_mb, reset_peak_memory, timed


#: Synthetic scales: (users, items, interactions).
SCALES = {
    "ml-20m": (138_000, 27_000, 20_000_000),
    "amazon-book": (110_000, 96_000, 3_000_000),
}


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
        [sys.executable, "-m", "recbole_derrd.benchmark.speed", "--child_topn", scale, "--device", device,
         "--topn", str(topn)],
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
