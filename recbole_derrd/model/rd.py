r"""
RD
################################################
Reference:
    Jiaxi Tang, Ke Wang. "Ranking Distillation: Learning Compact Ranking Models With High
    Performance for Recommender System." In KDD 2018.

The teacher's top-K items of a user are extra positives of the student, weighted by their
position in the teacher's list and by how badly the student ranks them:

.. math::
    \mathcal{L}_{RD}(u) = -\sum_{r=1}^{K} w_r \log \sigma(s_{u, \pi_r}), \qquad
    w^a_r = \frac{e^{-r/\lambda}}{\sum_{r'} e^{-r'/\lambda}}, \qquad
    w^b_r = \tanh\big(\max(\mu (\hat r_{\pi_r} - r), 0)\big)

where :math:`\hat r` is the student's rank of the item among all items, estimated from the
student's scores of :math:`\epsilon` uniformly sampled items. Position weights :math:`w^a` alone
are used for the first epochs (the student's ranks mean little at first), then the hybrid
:math:`w_r = w^a_r w^b_r`.
"""

import torch
import torch.nn.functional as F

from recbole_derrd.model.distiller import Distiller
from recbole_derrd.settings.registry import register_distiller
from recbole_derrd.settings.validation import check_data_requirements


def rd_position_weights(topk, temperature, device=None):
    r"""Position importance :math:`w^a_r \propto e^{-r/\lambda}`, ``r = 1..K``, summing to 1."""
    ranks = torch.arange(1, topk + 1, dtype=torch.float, device=device)
    weights = torch.exp(-ranks / temperature)
    total = weights.sum()
    if not 0 < total < float("inf"):  # a tiny lambda underflows every weight: the softmax's
        return torch.softmax(-ranks / temperature, dim=0)  # (1, 0, ..., 0), not 0 / 0
    return weights / total


def rd_discrepancy_weights(topk_scores, sampled_scores, n_items, sharpness):
    r"""Ranking discrepancy :math:`w^b_r = \tanh(\max(\mu(\hat r - r), 0))`.

    Args:
        topk_scores (torch.Tensor): ``[B, K]`` student scores of the teacher's top-K (in order).
        sampled_scores (torch.Tensor): ``[B, eps]`` student scores of uniformly sampled items.
        n_items (int): catalogue size the rank is estimated over.
        sharpness (float): :math:`\mu`.
    """
    higher = (sampled_scores.unsqueeze(1) > topk_scores.unsqueeze(2)).float().mean(dim=2)
    estimated_rank = higher * n_items  # [B, K], 0 = ranked first
    teacher_rank = torch.arange(topk_scores.shape[1], device=topk_scores.device).float()
    return torch.tanh((sharpness * (estimated_rank - teacher_rank)).clamp(min=0))


def rd_loss(topk_scores, weights):
    r"""Per-user :math:`-\sum_r w_r \log\sigma(s_{\pi_r})`, ``[B]``."""
    return -(weights * F.logsigmoid(topk_scores)).sum(dim=-1)


@register_distiller
class RD(Distiller):
    r"""A student backbone distilled with Ranking Distillation: the teacher's top-K items as
    weighted extra positives. Inference is the plain student."""

    loss_names = ("base", "rd")
    loss_weight_keys = ("lambda_rd",)

    @classmethod
    def check_keys(cls, checker):
        super().check_keys(checker)
        checker.integer("rd_topk", minimum=1)
        checker.number("rd_position_temperature", strictly_positive=True)
        checker.number("rd_discrepancy_sharpness", minimum=0)
        checker.integer("rd_rank_samples", minimum=1)
        checker.integer("rd_discrepancy_start_epoch", minimum=0)

    @classmethod
    def data_requirements(cls, config, dataset, split=None):
        check_data_requirements(config, dataset, config["rd_topk"], 0, topn_key="rd_topk", split=split)

    def __init__(self, config, dataset, teacher=None, split=None):
        super().__init__(config, dataset, teacher=teacher, split=split)
        self.lambda_rd = config["lambda_rd"]
        self.topk = config["rd_topk"]
        self.rank_samples = config["rd_rank_samples"]
        self.sharpness = config["rd_discrepancy_sharpness"]
        self.discrepancy_start_epoch = config["rd_discrepancy_start_epoch"]
        self.register_buffer("teacher_topn", self.compute_teacher_topn(self.topk), persistent=False)
        self.register_buffer(
            "position_weights",
            rd_position_weights(self.topk, config["rd_position_temperature"], self.device),
            persistent=False,
        )
        self.epoch = 0

    def start_epoch(self, epoch):
        self.epoch = epoch

    def shared_state(self):
        return [self.teacher_topn]

    def rd_term(self, batch_users):
        """The RD term of the batch's unique users."""
        topk_items = self.teacher_topn[batch_users]
        if self.epoch < self.discrepancy_start_epoch or self.sharpness == 0:
            scores = self.student_backbone.pair_scores(batch_users, topk_items)
            weights = self.position_weights.expand_as(scores)
        else:
            sampled = torch.randint(1, self.n_items, (len(batch_users), self.rank_samples),
                                    device=self.device)
            scores = self.student_backbone.pair_scores(batch_users, torch.cat([topk_items, sampled], 1))
            scores, sampled_scores = scores.split([self.topk, self.rank_samples], dim=1)
            discrepancy = rd_discrepancy_weights(
                scores.detach(), sampled_scores.detach(), self.n_items - 1, self.sharpness
            )
            weights = self.position_weights * discrepancy
        return self.reduce(rd_loss(scores, weights))

    def calculate_loss(self, interaction):
        batch_users = torch.unique(interaction[self.USER_ID])
        with self.student_backbone.training_step():
            return self.base_loss(interaction), self.weighted_term(self.lambda_rd, self.rd_term, batch_users)
