"""
recbole_derrd.trainer
#####################
Trainers of the plugin's distillers: RecBole's ``Trainer`` with

- the distiller's per-epoch work (temperature annealing, RRD resampling) done at the start of
  every epoch, through ``_train_epoch``;
- checkpoints that load with ``torch.load(weights_only=True)`` (:mod:`recbole_derrd.checkpoint`);
- the loss parts logged by name (``base``, ``de``, ``rrd``).
"""

from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_derrd.checkpoint import SafeCheckpointMixin


class DistillationTrainer(SafeCheckpointMixin, Trainer):
    r"""Trainer for :class:`recbole_derrd.model.distiller.Distiller` models."""

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self.model.start_epoch(epoch_idx)
        return super()._train_epoch(
            train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress
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
        return (
            set_color(f"epoch {epoch_idx} training", "green")
            + " ["
            + set_color("time", "blue")
            + f": {e_time - s_time:.2f}s, {parts}]"
        )


class DERRDTrainer(DistillationTrainer):
    r"""Trainer of :class:`recbole_derrd.model.DERRD`."""
