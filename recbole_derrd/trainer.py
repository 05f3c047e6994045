"""
recbole_derrd.trainer
#####################
Trainers of the plugin's distillers: RecBole's ``Trainer`` with

- the distiller's per-epoch work (temperature annealing, RRD resampling) done at the start of
  every epoch, through ``_train_epoch``;
- checkpoints that load with ``torch.load(weights_only=True)`` and resume files
  (:mod:`recbole_derrd.checkpoint`);
- RecBole's multi-process mode on GPUs and CPUs (:mod:`recbole_derrd.distributed`), where every
  process checks, each epoch, that it holds the same teacher top-N and samples as the others;
- the loss parts logged by name (``base``, ``de``, ``rrd``).
"""

import hashlib

import torch
from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_derrd.checkpoint import SafeCheckpointMixin
from recbole_derrd.distributed import DistributedTrainerBase, gather_objects, is_distributed


class DistributionMismatchError(RuntimeError):
    """The processes of a multi-process run computed different teacher rankings or samples."""


def tensors_digest(tensors):
    """A hash of the values (and shapes) of ``tensors``."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(str(tuple(tensor.shape)).encode("utf-8"))
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class DistillationTrainer(SafeCheckpointMixin, Trainer, DistributedTrainerBase):
    r"""Trainer for :class:`recbole_derrd.model.distiller.Distiller` models."""

    def __init__(self, config, model):
        super().__init__(config, model)
        #: The model's figures of every training epoch (e.g. DE's temperature and experts per
        #: entity), in the order trained.
        self.epoch_diagnostics = []

    def _build_optimizer(self, **kwargs):
        """RecBole's optimizer, with torch's fused kernel for Adam and AdamW (same update rule):
        DE's experts hold about 1.5M parameters, and the per-tensor Adam loop over them costs
        more per step than their annealed sparse mixture."""
        optimizer = super()._build_optimizer(**kwargs)
        fusable = type(optimizer) in (torch.optim.Adam, torch.optim.AdamW) and all(
            parameter.device.type in ("cpu", "cuda")
            for group in optimizer.param_groups
            for parameter in group["params"]
        )
        if not fusable:
            return optimizer
        groups = [dict(group, fused=True, foreach=None) for group in optimizer.param_groups]
        return type(optimizer)(groups, fused=True)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self.model.start_epoch(epoch_idx)
        if is_distributed(self.config):
            self.check_shared_state(epoch_idx)
        losses = super()._train_epoch(
            train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress
        )
        self.epoch_diagnostics.append(self.model.epoch_diagnostics())
        return losses

    def check_shared_state(self, epoch_idx):
        """Every process computes the teacher's top-N and the epoch's samples itself (from the
        same teacher, with a generator seeded by (seed, epoch)); they must agree, or the
        processes would distil different targets."""
        digests = gather_objects(tensors_digest(self.model.shared_state()), self.config)
        if len(set(digests)) > 1:
            raise DistributionMismatchError(
                f"Epoch {epoch_idx}: the processes hold different teacher top-N items or "
                "samples (teacher scoring is not deterministic across them?); digests by rank: "
                + ", ".join(digests)
            )

    def checkpoint_state(self, epoch):
        state = super().checkpoint_state(epoch)
        state["teacher_checkpoint"] = self.config["teacher_checkpoint"]
        return state

    def _generate_train_loss_output(self, epoch_idx, s_time, e_time, losses):
        names = getattr(self.model, "loss_names", None)
        if not isinstance(losses, tuple) or names is None or len(names) != len(losses):
            return super()._generate_train_loss_output(epoch_idx, s_time, e_time, losses)
        decimals = self.config["loss_decimal_place"] or 4
        parts = ", ".join(
            set_color(f"{name} loss", "blue") + f": {loss:.{decimals}f}"
            for name, loss in zip(names, losses)
        )
        diagnostics = self.epoch_diagnostics[-1] if self.epoch_diagnostics else {}
        if "tau" in diagnostics:
            parts += (
                ", " + set_color("tau", "blue") + f": {diagnostics['tau']:.3g}, "
                + set_color("experts/entity", "blue") + f": {diagnostics['active_experts']:.2f}"
            )
        return (
            set_color(f"epoch {epoch_idx} training", "green")
            + " ["
            + set_color("time", "blue")
            + f": {e_time - s_time:.2f}s, {parts}]"
        )


class DERRDTrainer(DistillationTrainer):
    r"""Trainer of :class:`recbole_derrd.model.DERRD`."""


class RDTrainer(DistillationTrainer):
    r"""Trainer of :class:`recbole_derrd.model.RD`."""


class CDTrainer(DistillationTrainer):
    r"""Trainer of :class:`recbole_derrd.model.CD`."""
