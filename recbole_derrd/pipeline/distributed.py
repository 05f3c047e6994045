"""
recbole_derrd.pipeline.distributed
##################################
RecBole's multi-process mode (``torch.distributed``), on GPUs and on the CPU.

RecBole runs one process per GPU: ``run`` spawns ``nproc`` processes, each builds its
``Config`` with a ``local_rank``, which joins the process group (NCCL, hard-wired) and puts the
process on ``cuda:<local_rank>``; dataloaders shard their batches (``DistributedSampler``), the
trainer wraps the model in ``DistributedDataParallel`` (gradients averaged across processes)
and evaluation results are averaged across processes. This module adds what the plugin needs
around that:

- the ``dist_backend`` key: ``nccl`` keeps RecBole's set-up, ``gloo`` runs the processes on the
  CPU (:func:`join_cpu_process_group`);
- the launch settings checked before any process starts (:func:`check_launch_settings`);
- :class:`DistributedTrainerBase`, RecBole's ``AbstractTrainer`` with a ``DistributedDataParallel``
  wrap that also works for CPU models and leaves models without trainable parameters (a frozen
  teacher being evaluated) unwrapped;
- small helpers: which process writes files, barriers, gathering values from every process.
"""

import hashlib
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from recbole.trainer.trainer import AbstractTrainer

from recbole_derrd.errors import UserError

#: Values of ``dist_backend``.
BACKENDS = ("nccl", "gloo")


class DistributedSettingsError(UserError, ValueError):
    """The multi-process settings (backend, process counts, address) cannot work."""


def is_distributed(config):
    """Whether ``config`` belongs to one process of a multi-process run."""
    return not config["single_spec"]


def writes_files(config):
    """Whether this process writes files: the only process of a single-process run, or the
    first process of each machine in a multi-process run (RecBole's rule: every machine keeps
    the checkpoints its processes read back)."""
    return not is_distributed(config) or config["local_rank"] == 0


def global_rank(config):
    """This process's rank among all processes of all machines."""
    return 0 if not is_distributed(config) else config["local_rank"] + config["offset"]


def barrier(config):
    """Wait for every process (no-op in a single-process run)."""
    if is_distributed(config):
        dist.barrier()


def gather_objects(value, config):
    """``value`` of every process, by global rank (``[value]`` in a single-process run)."""
    if not is_distributed(config):
        return [value]
    values = [None] * config["world_size"]
    dist.all_gather_object(values, value)
    return values


def broadcast_object(value, config):
    """Global rank 0's ``value``, on every process (``value`` itself in a single process)."""
    if not is_distributed(config):
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def check_launch_settings(backend, nproc, world_size, ip, port, group_offset, gpu_id=""):
    r"""Check the settings of a multi-process launch before any process starts.

    Args:
        backend (str): ``dist_backend``.
        nproc (int): processes started on this machine.
        world_size (int): processes on all machines (-1: ``nproc``).
        ip (str), port (int or str): address of the machine that hosts global rank 0.
        group_offset (int): global rank of this machine's first process.
        gpu_id (str): visible GPUs (``gpu_id`` key), for ``nccl``.

    Returns:
        int: the world size.

    Raises:
        DistributedSettingsError: naming every problem found.
    """
    problems = []
    if backend not in BACKENDS:
        problems.append(f"dist_backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if not _is_int(nproc) or nproc < 1:
        problems.append(f"nproc must be a positive integer, got {nproc!r}")
    if world_size == -1 and _is_int(nproc):
        world_size = nproc
    if not _is_int(world_size) or world_size < 1:
        problems.append(f"world_size must be a positive integer (or -1 for nproc), got {world_size!r}")
    if not _is_int(group_offset) or group_offset < 0:
        problems.append(f"group_offset must be a non-negative integer, got {group_offset!r}")
    if not problems and group_offset + nproc > world_size:
        problems.append(
            f"group_offset + nproc = {group_offset + nproc} exceeds world_size = {world_size}: "
            "the processes of all machines together must number world_size"
        )
    if not isinstance(ip, str) or not ip:
        problems.append(f"ip must be a host name or address, got {ip!r}")
    try:
        valid_port = 0 < int(port) < 65536
    except (TypeError, ValueError):
        valid_port = False
    if not valid_port:
        problems.append(f"port must be an integer in 1..65535, got {port!r}")
    if backend == "nccl" and _is_int(nproc):
        problems.extend(_nccl_problems(nproc, gpu_id))
    if problems:
        raise DistributedSettingsError(
            "Invalid multi-process settings:\n  - " + "\n  - ".join(problems)
        )
    return world_size


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _nccl_problems(nproc, gpu_id):
    if not torch.cuda.is_available():
        return [
            "dist_backend nccl needs CUDA GPUs and none is available: use dist_backend gloo to "
            "run the processes on the CPU"
        ]
    visible = [device for device in str(gpu_id).split(",") if device.strip()]
    if len(visible) < nproc:
        return [
            f"dist_backend nccl runs one process per GPU: nproc = {nproc} needs {nproc} GPU ids "
            f"in gpu_id, got {gpu_id!r}"
        ]
    return []


def join_cpu_process_group(final_config_dict):
    """Join the process group over ``gloo`` and run this process on the CPU: RecBole's NCCL set-up
    (``Config._init_device``) with the CPU in place of ``cuda:<local_rank>``."""
    settings = final_config_dict
    dist.init_process_group(
        backend="gloo",
        rank=settings["local_rank"] + settings["offset"],
        world_size=settings["world_size"],
        init_method=f"tcp://{settings['ip']}:{settings['port']}",
    )
    settings["device"] = torch.device("cpu")
    settings["single_spec"] = False
    if settings["local_rank"] != 0:  # as RecBole: the first process logs, the others stay quiet
        settings["state"] = "error"
        settings["show_progress"] = False
        settings["verbose"] = False


class DistributedTrainerBase(AbstractTrainer):
    r"""RecBole's ``AbstractTrainer`` with a ``DistributedDataParallel`` wrap that fits the model.

    RecBole wraps every model with ``device_ids=[local_rank]``, which ``DistributedDataParallel``
    refuses for a CPU model, and wraps models without trainable parameters, which it refuses
    too (there are no gradients to average). Placed beneath the trainer class in the method
    resolution order (``class T(SafeCheckpointMixin, Trainer, DistributedTrainerBase)``), its
    ``__init__`` takes the place of ``AbstractTrainer.__init__``.

    It also creates ``checkpoint_dir`` race-free: ``Trainer.__init__`` creates it next with a
    check-then-create that fails when processes build their trainers at the same moment.
    """

    def __init__(self, config, model):
        self.config = config
        self.model = model
        os.makedirs(config["checkpoint_dir"], exist_ok=True)
        if is_distributed(config) and any(p.requires_grad for p in model.parameters()):
            on_gpu = next(model.parameters()).device.type == "cuda"
            if on_gpu:  # SyncBatchNorm runs on GPUs only
                self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            # broadcast_buffers=False: every process computes the teacher's tensors and the
            # epoch's samples itself (checked each epoch); re-sending them from rank 0 at every
            # step would copy hundreds of MB per step at scale
            self.distributed_model = DistributedDataParallel(
                self.model,
                device_ids=[config["local_rank"]] if on_gpu else None,
                broadcast_buffers=False,
            )


class DistributionMismatchError(RuntimeError):
    """The processes of a multi-process run computed different teacher rankings or samples."""


def tensors_digest(tensors):
    """A hash of the values (and shapes) of ``tensors``."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(str(tuple(tensor.shape)).encode("utf-8"))
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
