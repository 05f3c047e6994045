"""
recbole_derrd.benchmark.speed_epoch
###################################
The speed benchmark's ``epoch`` part: one training epoch of DE, RRD and DE-RRD against the same
student trained alone (BPR, d = 20, RecBole's batch size and dataloader; the 200-d BPR teacher
has random weights: what it learned does not change the cost), whole epochs on ml-100k,
windows of batches at ML-20M scale (an epoch estimated from the median step).
"""

import os
import statistics
import sys
import time

from recbole_derrd.benchmark import REPO
from recbole_derrd.benchmark.speed_timing import synchronize, timed


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
