"""
recbole_derrd.trainer
#####################
Trainers of the plugin's distillers: RecBole's ``Trainer`` with

- the distiller's per-epoch work (temperature annealing, RRD resampling) done at the start of
  every epoch, through ``_train_epoch``;
- checkpoints that load with ``torch.load(weights_only=True)`` and resume files
  (:class:`SafeCheckpointMixin`, mixed into every trainer the plugin returns, baselines'
  included; the files themselves: :mod:`recbole_derrd.files.checkpoint`);
- RecBole's multi-process mode on GPUs and CPUs (:mod:`recbole_derrd.pipeline.distributed`), where every
  process checks, each epoch, that it holds the same teacher top-N and samples as the others;
- the loss parts logged by name (``base``, ``de``, ``rrd``).
"""

import copy
import os
import time
import uuid
from collections import OrderedDict
from logging import getLogger

import torch
from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_derrd.files.checkpoint import (
    CHECKPOINT_FORMAT,
    RESUME_KIND,
    create_checkpoint,
    differing_settings,
    plain_config,
    read_checkpoint,
    read_resume_file,
    resume_path,
    save_checkpoint,
    tensor_other_parameters,
    to_plain,
    unique_path,
)
from recbole_derrd.data.dataset import training_split
from recbole_derrd.pipeline.distributed import (
    DistributedTrainerBase,
    DistributionMismatchError,
    barrier,
    broadcast_object,
    gather_objects,
    global_rank,
    is_distributed,
    tensors_digest,
    writes_files,
)
from recbole_derrd.errors import CheckpointError, UserError
from recbole_derrd.files.locks import acquire_run_files, release_run_files
from recbole_derrd.pipeline.random_state import run_random_state, set_run_random_state


class TrainingDivergedError(UserError, ValueError):
    """The training loss became nan: the settings make the training diverge."""


class SafeCheckpointMixin:
    r"""Mixed into a RecBole ``Trainer``: checkpoints that load with ``weights_only=True``, and
    runs that resume where they stopped.

    RecBole's layout is kept (``config``, ``epoch``, ``cur_step``, ``best_valid_score``,
    ``state_dict``, ``other_parameter``, ``optimizer``) with the config as a plain dict, plus
    ``format`` and ``model``. A new checkpoint never overwrites an existing file (RecBole's
    names have one-second resolution).

    RecBole saves the model only when validation improves, so resuming from that file would
    go back to the best epoch. Here every epoch starts by writing :attr:`resume_file` (this
    run's own, overwritten each epoch): the checkpoint state plus ``kind: resume``, the best
    validation result, the training losses so far, the best-model file's name and the random
    generators of every process (:mod:`recbole_derrd.pipeline.random_state`). A resumed run restores all
    of it and continues writing the same two files.
    """

    def __init__(self, config, model):
        super().__init__(config, model)
        self.saved_model_file = unique_path(self.saved_model_file, companion=resume_path)
        #: Written into every file of this run: a resumed run writes only to files that carry
        #: its own id.
        self.run_id = uuid.uuid4().hex
        #: This run's resume file; None: not written.
        self.resume_file = resume_path(self.saved_model_file)
        self.split_fingerprint = None
        #: The run's :class:`~recbole_derrd.data.dataset.TrainingSplit`, if the run computed it.
        self.training_split = None
        self.writes_resume_file = False
        self.resumed_split = None
        self.resumed_random_state = None
        self.files_reserved = False
        #: The best-model file whose run files this trainer holds (:meth:`hold_files`), or None.
        self.files_held = None
        #: The epoch being trained (for messages).
        self.current_epoch = None
        #: Wall time of every training epoch of this run (the per-epoch work of a distiller
        #: included, evaluation excluded).
        self.epoch_seconds = []
        #: The report of the weight search that chose this run's loss weights
        #: (:mod:`recbole_derrd.pipeline.weight_search`), saved with every checkpoint; None: no search.
        self.weight_search = None
        #: True: the best model is kept in memory (:attr:`best_state`) instead of a file (a
        #: weight-search trial, adopted by the run when chosen: :meth:`adopt_trial`).
        self.keeps_best_in_memory = False
        #: The checkpoint state of the best epoch so far, with :attr:`keeps_best_in_memory`.
        self.best_state = None

    def fit(
        self,
        train_data,
        valid_data=None,
        verbose=True,
        saved=True,
        show_progress=False,
        callback_fn=None,
    ):
        # Recorded in every checkpoint, so that a model used later as a teacher can be
        # checked against the student's training split.
        self.split_fingerprint = training_split(train_data.dataset, self.training_split).fingerprint
        if self.resumed_split is not None and self.resumed_split != self.split_fingerprint:
            raise CheckpointError(
                f"Cannot resume from '{self.resume_file}': it was trained on another training "
                "split than this run's (same dataset name, different interactions or split "
                "settings)."
            )
        self.writes_resume_file = saved and self.resume_file is not None
        try:
            result = super().fit(
                train_data,
                valid_data,
                verbose=verbose,
                saved=saved,
                show_progress=show_progress,
                callback_fn=callback_fn,
            )
            if self.writes_resume_file and writes_files(self.config) and os.path.isfile(self.resume_file):
                # the run ended (all epochs, or early stopping): resuming it would train again
                state = torch.load(self.resume_file, map_location="cpu", weights_only=True)
                state["finished"] = True
                save_checkpoint(state, self.resume_file)
        finally:
            self.release_files()  # marked finished first: no resume can take them after this
        return result

    def hold_files(self):
        """Take this run's files (best model, resume file) exclusively until
        :meth:`release_files` (:mod:`recbole_derrd.files.locks`): another run that would
        write them (a resume of this run) is refused. Only the process that writes files
        holds them; a resumed multi-process run's launcher holds them for its processes."""
        if self.files_held is None and writes_files(self.config):
            acquire_run_files(self.saved_model_file)
            self.files_held = self.saved_model_file

    def release_files(self):
        if self.files_held is not None:
            release_run_files(self.files_held)
            self.files_held = None

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if self.resumed_random_state is not None:
            set_run_random_state(self.resumed_random_state, train_data)
            self.resumed_random_state = None
        elif self.writes_resume_file:
            self._save_resume_file(epoch_idx - 1, train_data)
        self.current_epoch = epoch_idx
        start = time.perf_counter()
        losses = super()._train_epoch(
            train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress
        )
        self.epoch_seconds.append(time.perf_counter() - start)
        return losses

    def _check_nan(self, loss):
        """RecBole's check of every batch's loss, as a user error that says what to change."""
        if torch.isnan(loss):
            weights = [key for key in getattr(self.model, "loss_weight_keys", ()) if key in self.config]
            settings = ", ".join(f"{key}={self.config[key]}" for key in ["learning_rate"] + weights)
            raise TrainingDivergedError(
                f"The training loss is nan in epoch {self.current_epoch}: the training diverged "
                f"({settings}). Lower the learning rate or the loss weights and start again."
            )

    def checkpoint_state(self, epoch):
        """The dictionary written by :meth:`_save_checkpoint`; subclasses extend it."""
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.config["model"],
            "config": plain_config(self.config),
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": float(self.best_valid_score),
            "state_dict": self.model.state_dict(),
            "other_parameter": tensor_other_parameters(self.model),
            "optimizer": self.optimizer.state_dict(),
            "split_fingerprint": self.split_fingerprint,
            "run_id": self.run_id,
            "weight_search": to_plain(self.weight_search),
        }

    def _write_own_file(self, state, resume):
        """Write ``state`` to this run's best-model file (or, with ``resume``, its resume file).

        The first write of a run claims the pair of names (:func:`create_checkpoint`: the next
        free ones, created exclusively and complete); global rank 0 chooses and every process
        of a multi-process run takes its choice. Every process calls this; only those that
        write files write.
        """
        if not self.files_reserved:
            chosen = None
            if global_rank(self.config) == 0:
                chosen = create_checkpoint(state, self.saved_model_file, resume=resume)
            self.saved_model_file = broadcast_object(chosen, self.config)
            if self.resume_file is not None:  # None: this run writes no resume file
                self.resume_file = resume_path(self.saved_model_file)
            self.files_reserved = True
            self.hold_files()
            if global_rank(self.config) == 0:
                return
        if writes_files(self.config):
            save_checkpoint(state, self.resume_file if resume else self.saved_model_file)

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if self.keeps_best_in_memory:
            # a copy: the state dicts hold the live parameters and optimizer buffers
            self.best_state = copy.deepcopy(self.checkpoint_state(epoch))
            return
        saved_model_file = kwargs.pop("saved_model_file", None)
        state = self.checkpoint_state(epoch) if writes_files(self.config) else None
        if saved_model_file is not None:  # an explicit file, RecBole's keyword
            if writes_files(self.config):
                save_checkpoint(state, saved_model_file)
        else:
            self._write_own_file(state, resume=False)
            saved_model_file = self.saved_model_file
        if verbose and writes_files(self.config):
            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")

    def trained_run(self):
        """What :meth:`adopt_trial` needs of this trainer after :meth:`fit` with
        :attr:`keeps_best_in_memory`: the best epoch's state and the training record."""
        return {
            "state": self.best_state,
            "best_valid_score": self.best_valid_score,
            "best_valid_result": self.best_valid_result,
            "train_loss": dict(self.train_loss_dict),
            "epoch_seconds": list(self.epoch_seconds),
            "epoch_diagnostics": list(getattr(self, "epoch_diagnostics", [])),
        }

    def adopt_trial(self, trained_run, train_data):
        """Take a finished training of this run's exact settings (the weight-search trial
        the search chose, :meth:`trained_run`) as this run's own, instead of training it
        again: the model gets its best state, the best-model file is written (with this run's
        id and weight-search report), and no resume file is written (the run is finished).
        ``train_data`` gives the evaluator the training statistics some metrics need, as
        :meth:`fit` does.

        Returns:
            tuple: ``(best_valid_score, best_valid_result)``, as :meth:`fit` returns them.
        """
        state = trained_run["state"]
        self._load_model_state(state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.cur_step = state["cur_step"]
        self.split_fingerprint = state["split_fingerprint"]
        self.best_valid_score = trained_run["best_valid_score"]
        self.best_valid_result = trained_run["best_valid_result"]
        self.train_loss_dict.update(trained_run["train_loss"])
        self.epoch_seconds = list(trained_run["epoch_seconds"])
        if hasattr(self, "epoch_diagnostics"):
            self.epoch_diagnostics = list(trained_run["epoch_diagnostics"])
        self.resume_file = None
        self.eval_collector.data_collect(train_data)
        # the best-model file as training would have written it at that epoch, with this
        # run's configuration, id and weight-search report
        try:
            self._save_checkpoint(state["epoch"])
        finally:
            self.release_files()
        return self.best_valid_score, self.best_valid_result

    def resume_state(self, epoch, train_data):
        """The dictionary of :attr:`resume_file` after ``epoch`` (-1: before the first).

        Every process takes part (its random generators are gathered); the result is only
        meaningful where :func:`~recbole_derrd.pipeline.distributed.writes_files` holds.
        """
        random_states = gather_objects(run_random_state(train_data), self.config)
        state = self.checkpoint_state(epoch)
        state.update(
            kind=RESUME_KIND,
            best_model_file=os.path.basename(self.saved_model_file),
            best_valid_result=to_plain(self.best_valid_result),
            random_states=random_states,
            # the whole run's training record, so a resumed run reports its time and epochs
            **self.training_record(),
        )
        return state

    def training_record(self):
        """The run's training so far as plain data: ``train_loss`` (``[[epoch, loss]...]``),
        ``epoch_seconds`` and ``epoch_diagnostics``."""
        return {
            "train_loss": [[epoch_idx, loss] for epoch_idx, loss in self.train_loss_dict.items()],
            "epoch_seconds": list(self.epoch_seconds),
            "epoch_diagnostics": to_plain(list(getattr(self, "epoch_diagnostics", []))),
        }

    def _save_resume_file(self, epoch, train_data):
        state = self.resume_state(epoch, train_data)
        state["finished"] = False
        self._write_own_file(state, resume=True)

    def _load_model_state(self, checkpoint):
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))

    def resume_checkpoint(self, resume_file):
        r"""Continue an interrupted run from its resume file (or its best-model file, beside
        which the resume file is): from the epoch it was in, with its model, optimizer,
        early-stopping state, training losses and random generators, writing its best-model
        and resume files on.

        Raises:
            CheckpointError: as :func:`read_resume_file`, or parameters that do not fit.
                Another training split is reported by :meth:`fit`, before the first epoch.
        """
        resume_file, checkpoint = read_resume_file(resume_file, self.config)
        start_epoch = checkpoint["epoch"] + 1
        best_model_file = checkpoint["best_model_file"]  # derived from resume_file's name
        try:
            self._load_model_state(checkpoint)
            self.optimizer.load_state_dict(checkpoint["optimizer"])  # moved to the parameters' device
        except (RuntimeError, ValueError, KeyError) as error:
            raise CheckpointError(
                f"Cannot resume from '{resume_file}': its parameters do not fit this model "
                f"(was the run started with other settings?): {error}"
            ) from None
        self.start_epoch = start_epoch
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        if checkpoint["best_valid_result"] is not None:
            self.best_valid_result = OrderedDict(checkpoint["best_valid_result"])
        self.train_loss_dict = {epoch: loss for epoch, loss in checkpoint["train_loss"]}
        # files written before they held the training record resume without it
        self.epoch_seconds = list(checkpoint.get("epoch_seconds", []))
        if hasattr(self, "epoch_diagnostics"):
            self.epoch_diagnostics = list(checkpoint.get("epoch_diagnostics", []))
        self.saved_model_file = best_model_file
        self.resume_file = resume_file
        self.run_id = checkpoint["run_id"]  # the files keep the interrupted run's id
        self.files_reserved = True  # this run's own files
        if not is_distributed(self.config):  # else the launching process holds them
            self.hold_files()
        self.resumed_split = checkpoint["split_fingerprint"]
        random_states = checkpoint["random_states"]
        if len(random_states) == (self.config["world_size"] if is_distributed(self.config) else 1):
            self.resumed_random_state = random_states[global_rank(self.config)]
        else:
            self.logger.warning(
                f"'{resume_file}' was written by a run of {len(random_states)} process(es): the "
                "random generators are not restored, so the run continues, but not exactly as "
                "the interrupted one would have."
            )
        differing = differing_settings(checkpoint["config"], plain_config(self.config))
        if differing:
            self.logger.warning(
                "Resuming with other settings than the interrupted run: "
                + "; ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in differing.items())
            )
        self.logger.info(
            f"Resuming {resume_file}: training continues at epoch {self.start_epoch}, the best "
            f"model is kept in {self.saved_model_file}"
        )

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and eval_data:
            barrier(self.config)  # the best model may just have been written by another process
            checkpoint_file = model_file or self.saved_model_file
            checkpoint = read_checkpoint(
                checkpoint_file,
                trust=bool(self.config["trust_checkpoint"]),
                map_location=self.device,
            )
            self._load_model_state(checkpoint)
            getLogger().info(f"Loading model structure and parameters from {checkpoint_file}")
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)


def fused_optimizer(optimizer):
    """RecBole's ``optimizer`` with torch's fused kernel for Adam and AdamW (same update rule,
    other rounding): DE's experts hold about 1.5M parameters, and the per-tensor Adam loop over
    them costs more per step than their annealed sparse mixture. The distillers' learner, and
    the student alone's (:mod:`recbole_derrd.pipeline.student_objective`)."""
    fusable = type(optimizer) in (torch.optim.Adam, torch.optim.AdamW) and all(
        parameter.device.type in ("cpu", "cuda")
        for group in optimizer.param_groups
        for parameter in group["params"]
    )
    if not fusable:
        return optimizer
    groups = [dict(group, fused=True, foreach=None) for group in optimizer.param_groups]
    return type(optimizer)(groups, fused=True)


class DistillationTrainer(SafeCheckpointMixin, Trainer, DistributedTrainerBase):
    r"""Trainer for :class:`recbole_derrd.model.distiller.Distiller` models."""

    def __init__(self, config, model):
        super().__init__(config, model)
        #: The model's figures of every training epoch (e.g. DE's temperature and experts per
        #: entity), in the order trained.
        self.epoch_diagnostics = []
        #: Whether the last evaluation was left out of early stopping's count.
        self.stopping_deferred = False

    def _build_optimizer(self, **kwargs):
        return fused_optimizer(super()._build_optimizer(**kwargs))

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self.model.start_epoch(epoch_idx)
        if is_distributed(self.config):
            self.check_shared_state(epoch_idx)
        losses = super()._train_epoch(
            train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress
        )
        self.epoch_diagnostics.append(self.model.epoch_diagnostics())
        return losses

    def _valid_epoch(self, valid_data, show_progress=False):
        """RecBole's validation; an evaluation the model's transient phase leaves out of early
        stopping's count (:meth:`~recbole_derrd.model.distiller.Distiller.early_stopping_counts`)
        sets the count back: patience counts from the end of that phase."""
        result = super()._valid_epoch(valid_data, show_progress=show_progress)
        counts = broadcast_object(self.model.early_stopping_counts(self.epoch_diagnostics), self.config)
        if not counts:
            # RecBole's early_stopping, next, adds this evaluation to cur_step: from -1, it
            # does not count (an improvement still makes it the best)
            self.cur_step = -1
        elif self.stopping_deferred:
            self.logger.info(
                f"Early stopping counts from epoch {len(self.epoch_diagnostics) - 1} on: the "
                f"{self.config['model']} student's transient phase is over"
            )
        self.stopping_deferred = not counts
        return result

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
        state["teacher_checkpoint"] = self.model.teacher.path  # given, or the on-demand teacher's cache
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
        for key, (label, spec) in getattr(self.model, "logged_diagnostics", {}).items():
            if key in diagnostics:
                parts += ", " + set_color(label, "blue") + f": {diagnostics[key]:{spec}}"
        return (
            set_color(f"epoch {epoch_idx} training", "green")
            + " ["
            + set_color("time", "blue")
            + f": {e_time - s_time:.2f}s, {parts}]"
        )


#: DERRD's trainer, by the name the README gives it (every distiller trains with
#: :class:`DistillationTrainer`, its ``trainer_class``).
DERRDTrainer = DistillationTrainer
