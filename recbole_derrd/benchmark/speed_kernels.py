"""
recbole_derrd.benchmark.speed_kernels
#####################################
The speed benchmark's parts that time one computation: DE's mixture dense against sparse
(``routing``), HTD's within-group level fused against autograd (``htd``), and where the time of
one annealed-phase DE-RRD training step goes (``profile``).
"""

import json
import os
import statistics
import sys
import time

import torch

from recbole_derrd.benchmark import REPO, RESULTS
from recbole_derrd.benchmark.machine import device_label
from recbole_derrd.benchmark.speed_epoch import untrained_teacher
from recbole_derrd.benchmark.speed_timing import interleaved_medians, timed
from recbole_derrd.benchmark.wholerun import WHOLERUN_PROTOCOLS


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


def dense_within_level(teacher_repr, student_repr, assignment, reduction="mean"):
    """HTD's within-group level as plain autograd computes it (the reference of ``bench_htd``,
    the plugin's computation before its fused function)."""
    from recbole_derrd.model.htd import cosine_relations, off_diagonal, reduce_relations

    difference = (cosine_relations(teacher_repr) - cosine_relations(student_repr)).pow(2)
    weights = (assignment @ assignment.T) * off_diagonal(len(teacher_repr), teacher_repr.device)
    return reduce_relations(difference, weights, reduction)


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
