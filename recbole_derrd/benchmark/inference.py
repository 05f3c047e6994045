"""
recbole_derrd.benchmark.inference
#################################
The inference time a table reports: full-sort scoring of all items, then the top-k, for all
users, every model of a seed timed side by side in one process (interleaved repeats, median),
each model rebuilt from its cell's checkpoint.
"""

import os
import statistics
import time

import torch

from recbole_derrd.benchmark.training import base_config, config_files


def cell_model(cell, args, base, dataset):
    """The backbone model of ``cell`` (a distiller's student, or a model trained alone)
    with its checkpoint's weights, in evaluation mode, and its configuration (``base``: the
    seed's base configuration)."""
    from recbole_derrd import Config
    from recbole_derrd.files.checkpoint import read_checkpoint
    from recbole_derrd.utils import get_model

    backbone = args.teacher_backbone if cell["method"] == "teacher" else args.backbone
    config = Config(backbone, args.dataset, config_files(args), dict(base, **cell["config"]),
                    parse_command_line=False)
    checkpoint = read_checkpoint(cell["checkpoint"], map_location=config["device"])
    state = {name[len("student."):]: value for name, value in checkpoint["state_dict"].items()
             if name.startswith("student.")} or checkpoint["state_dict"]
    model = get_model(backbone)(config, dataset).to(config["device"]).eval()
    model.load_state_dict(state)
    return model, config


def interleaved_times(models, users, chunk, k, device, repeats):
    """{key: [seconds of each repeat]} of full-sort inference of ``users`` by each of
    ``models``, the models in turn within every repeat."""
    from recbole_derrd.model.backbones import backbone_of

    times = {key: [] for key in models}
    with torch.no_grad():
        for _ in range(repeats):
            for key, model in models.items():  # interleaved
                scorer = backbone_of(model)
                start = time.perf_counter()
                for first in range(0, len(users), chunk):
                    scorer.score_users(users[first:first + chunk]).topk(k, dim=1)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[key].append(time.perf_counter() - start)
    return times


def time_inference(store, args, work, seed):
    """Time the models of ``seed`` not timed yet whose checkpoints are here, and save their
    cells (``store``) with ``inference_seconds``: the median over ``args.inference_repeats``."""
    from recbole.utils import init_seed

    from recbole_derrd import Config
    from recbole_derrd.data.dataset import create_dataset, data_preparation

    store.reload()  # cells another process timed meanwhile are not timed (and replaced) again
    keys = [key for key, cell in store.cells.items() if cell["seed"] == seed
            and "inference_seconds" not in cell and os.path.isfile(cell.get("checkpoint") or "")]
    if not keys:
        return
    config = Config(args.backbone, args.dataset, config_files(args), base_config(args, work, seed),
                    parse_command_line=False)
    init_seed(config["seed"], config["reproducibility"])
    train_data = data_preparation(config, create_dataset(config))[0]
    users = torch.arange(1, train_data.dataset.user_num, device=config["device"])
    models = {key: cell_model(store.cells[key], args, base_config(args, work, seed), train_data.dataset)[0]
              for key in keys}
    chunk = max(1, config["eval_batch_size"] // train_data.dataset.item_num)
    times = interleaved_times(models, users, chunk, max(config["topk"]), config["device"], args.inference_repeats)
    for key, values in times.items():
        store.cells[key] = dict(store.cells[key], inference_seconds=statistics.median(values))
    store.save()  # before the next seed's reload
