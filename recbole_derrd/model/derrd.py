r"""
DERRD
################################################
Reference:
    SeongKu Kang, Junyoung Hwang, Wonbin Kweon, Hwanjo Yu. "DE-RRD: A Knowledge Distillation
    Framework for Recommender System." In CIKM 2020.

.. math::
    \mathcal{L} = \mathcal{L}_{base} + \lambda_{DE} \mathcal{L}_{DE} + \lambda_{RRD} \mathcal{L}_{RRD}

- :math:`\mathcal{L}_{base}`: the student backbone's own RecBole loss (BPR for MF).
- :math:`\mathcal{L}_{DE}` (:mod:`recbole_derrd.model.experts`): on the batch's unique users,
  plus 0.5 x (unique positive items + unique negative items).
- :math:`\mathcal{L}_{RRD}` (:mod:`recbole_derrd.model.rrd`): on the batch's unique users, with
  interesting/uninteresting items resampled every epoch (:mod:`recbole_derrd.ranking`).
"""

import torch

from recbole_derrd.model.distiller import Distiller
from recbole_derrd.model.experts import DistillationExperts, annealed_temperature
from recbole_derrd.model.rrd import rrd_loss
from recbole_derrd.ranking import UninterestingSampler, sample_interesting
from recbole_derrd.validation import check_data_requirements


class DERRD(Distiller):
    r"""A student backbone distilled from a frozen teacher with Distillation Experts (DE) and
    Relaxed Ranking Distillation (RRD). Inference is the plain student."""

    @classmethod
    def check_keys(cls, checker):
        super().check_keys(checker)
        use_de, use_rrd = checker.boolean("use_de"), checker.boolean("use_rrd")
        checker.number("lambda_de", minimum=0)
        checker.number("lambda_rrd", minimum=0)
        checker.integer("de_num_experts", minimum=1)
        checker.number("de_tau_start", strictly_positive=True)
        checker.number("de_tau_end", strictly_positive=True)
        checker.integer("de_anneal_epochs", minimum=1, optional=True)
        topn = checker.integer("rrd_topn", minimum=1)
        interesting = checker.integer("rrd_num_interesting", minimum=1)
        checker.integer("rrd_num_uninteresting", minimum=1)
        checker.number("rrd_rank_temperature", strictly_positive=True)
        if topn is not None and interesting is not None and interesting > topn:
            checker.fail(
                f"rrd_num_interesting (K={interesting}) must not exceed rrd_topn (N={topn}): "
                "interesting items are drawn from the teacher's top-N"
            )
        if use_de is False and use_rrd is False:
            checker.fail("use_de and use_rrd are both False: nothing would be distilled")

    @classmethod
    def data_requirements(cls, config, dataset):
        if config["use_rrd"]:
            check_data_requirements(
                config, dataset, config["rrd_topn"], config["rrd_num_uninteresting"]
            )

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.use_de = config["use_de"]
        self.use_rrd = config["use_rrd"]
        self.lambda_de = config["lambda_de"]
        self.lambda_rrd = config["lambda_rrd"]
        self.loss_names = ("base",) + ("de",) * self.use_de + ("rrd",) * self.use_rrd

        if self.use_de:
            teacher_users, teacher_items = self.teacher_backbone.side_tables()
            student_users, _ = self.student_backbone.side_tables()
            self.register_buffer("teacher_user_repr", teacher_users.detach().clone(), persistent=False)
            self.register_buffer("teacher_item_repr", teacher_items.detach().clone(), persistent=False)
            student_dim, teacher_dim = student_users.shape[1], teacher_users.shape[1]
            self.user_experts = DistillationExperts(student_dim, teacher_dim, config["de_num_experts"])
            self.item_experts = DistillationExperts(student_dim, teacher_dim, config["de_num_experts"])
            self.tau_start, self.tau_end = config["de_tau_start"], config["de_tau_end"]
            self.anneal_epochs = config["de_anneal_epochs"] or config["epochs"]
            self.selection_tau = self.tau_start

        if self.use_rrd:
            self.num_interesting = config["rrd_num_interesting"]
            self.num_uninteresting = config["rrd_num_uninteresting"]
            self.rank_temperature = config["rrd_rank_temperature"]
            topn = self.compute_teacher_topn(config["rrd_topn"])
            self.register_buffer("teacher_topn", topn, persistent=False)
            indptr, items = self.training_interactions
            self.uninteresting_sampler = UninterestingSampler(
                indptr, items, topn, self.n_items, device=self.device
            )
            empty = torch.zeros((self.n_users, 0), dtype=torch.long, device=self.device)
            self.register_buffer("interesting_items", empty, persistent=False)
            self.register_buffer("uninteresting_items", empty.clone(), persistent=False)
            self.sampled_epoch = None

    def start_epoch(self, epoch):
        r"""Anneal :math:`\tau` and resample the RRD items of every user for ``epoch``."""
        if self.use_de:
            self.selection_tau = annealed_temperature(
                epoch, self.tau_start, self.tau_end, self.anneal_epochs
            )
        if self.use_rrd and self.sampled_epoch != epoch:
            generator = self.epoch_generator(epoch)
            positions = sample_interesting(
                self.n_users, self.teacher_topn.shape[1], self.num_interesting,
                self.rank_temperature, generator,
            )
            self.interesting_items = self.teacher_topn.gather(1, positions)
            self.uninteresting_items = self.uninteresting_sampler.sample(
                self.num_uninteresting, generator
            )
            self.sampled_epoch = epoch

    def shared_state(self):
        """The teacher's representations and top-N, and this epoch's RRD samples."""
        state = []
        if self.use_de:
            state += [self.teacher_user_repr, self.teacher_item_repr]
        if self.use_rrd:
            state += [self.teacher_topn, self.interesting_items, self.uninteresting_items]
        return state

    def de_loss(self, interaction, batch_users, student_tables):
        r""":math:`\mathcal{L}_{DE}` of the batch: users + 0.5 x (positive + negative items)."""
        student_users, student_items = student_tables
        user_losses = self.user_experts(
            student_users[batch_users], self.teacher_user_repr[batch_users], self.selection_tau
        )
        positive = torch.unique(interaction[self.ITEM_ID])
        negative = torch.unique(interaction[self.NEG_ITEM_ID])
        # An item that is both a positive and a negative of the batch is reconstructed once
        # (one Gumbel draw) and counted in both terms.
        items, occurrence = torch.unique(torch.cat([positive, negative]), return_inverse=True)
        item_losses = self.item_experts(
            student_items[items], self.teacher_item_repr[items], self.selection_tau
        )[occurrence]
        positive_losses, negative_losses = item_losses.split([len(positive), len(negative)])
        return self.reduce(user_losses) + 0.5 * (
            self.reduce(positive_losses) + self.reduce(negative_losses)
        )

    def rrd_loss(self, batch_users, student_tables):
        r""":math:`\mathcal{L}_{RRD}` of the batch's unique users."""
        if self.sampled_epoch is None:
            self.start_epoch(0)  # used outside the trainer
        interesting = self.interesting_items[batch_users]
        sampled = torch.cat([interesting, self.uninteresting_items[batch_users]], dim=1)
        if student_tables is not None:
            scores = self.student_backbone.table_scores(*student_tables, batch_users, sampled)
        else:
            scores = self.student_backbone.pair_scores(batch_users, sampled)
        interesting_scores, uninteresting_scores = scores.split(
            [interesting.shape[1], sampled.shape[1] - interesting.shape[1]], dim=1
        )
        return self.reduce(rrd_loss(interesting_scores, uninteresting_scores))

    def calculate_loss(self, interaction):
        r"""``(L_base, lambda_DE * L_DE, lambda_RRD * L_RRD)`` (the parts switched on), so that
        RecBole logs each part; RecBole sums them for the backward pass."""
        losses = [self.base_loss(interaction)]
        batch_users = torch.unique(interaction[self.USER_ID])
        # one evaluation of the student's representation per step (LightGCN propagates)
        student_tables = (
            self.student_backbone.side_tables() if self.student_backbone.has_side_tables else None
        )
        if self.use_de:
            losses.append(self.lambda_de * self.de_loss(interaction, batch_users, student_tables))
        if self.use_rrd:
            losses.append(self.lambda_rrd * self.rrd_loss(batch_users, student_tables))
        return tuple(losses)
