r"""
CD
################################################
Reference:
    Jae-woong Lee, Minjin Choi, Jongwuk Lee, Hyunjung Shim. "Collaborative Distillation for
    Top-N Recommendation." In ICDM 2019.

Every epoch, unobserved items are sampled for each user from the teacher's ranking
(rank-aware sampling: probability :math:`\propto e^{-rank/T}` over the teacher's top-N, training
items excluded), and the student learns the teacher's soft labels on them:

.. math::
    \mathcal{L}_{CD}(u) = -\sum_{j} \big[ q_{uj} \log\sigma(s_{uj}) + (1 - q_{uj})
    \log(1 - \sigma(s_{uj})) \big], \qquad q_{uj} = \sigma(t_{uj} / \tau)

with :math:`t` the teacher's scores and :math:`\tau` a temperature softening them.
"""

import torch
import torch.nn.functional as F

from recbole_derrd.model.distiller import Distiller
from recbole_derrd.settings.registry import register_distiller
from recbole_derrd.settings.validation import check_data_requirements
from recbole_derrd.teacher.ranking import sample_interesting, teacher_pair_scores


def cd_loss(student_scores, soft_labels):
    r"""Per-user binary cross-entropy against the teacher's soft labels, ``[B]``."""
    return F.binary_cross_entropy_with_logits(student_scores, soft_labels, reduction="none").sum(-1)


@register_distiller
class CD(Distiller):
    r"""A student backbone distilled with Collaborative Distillation: the teacher's soft labels
    on rank-sampled unobserved items. Inference is the plain student."""

    loss_names = ("base", "cd")
    loss_weight_keys = ("lambda_cd",)

    @classmethod
    def check_keys(cls, checker):
        super().check_keys(checker)
        topn = checker.integer("cd_topn", minimum=1)
        samples = checker.integer("cd_num_samples", minimum=1)
        checker.number("cd_rank_temperature", strictly_positive=True)
        checker.number("cd_label_temperature", strictly_positive=True)
        if topn is not None and samples is not None and samples > topn:
            checker.fail(f"cd_num_samples ({samples}) must not exceed cd_topn ({topn})")

    @classmethod
    def data_requirements(cls, config, dataset, split=None):
        check_data_requirements(config, dataset, config["cd_topn"], 0, topn_key="cd_topn", split=split)

    def __init__(self, config, dataset, teacher=None, split=None):
        super().__init__(config, dataset, teacher=teacher, split=split)
        self.lambda_cd = config["lambda_cd"]
        self.num_samples = config["cd_num_samples"]
        self.rank_temperature = config["cd_rank_temperature"]
        self.label_temperature = config["cd_label_temperature"]
        self.register_buffer("teacher_topn", self.compute_teacher_topn(config["cd_topn"]), persistent=False)
        empty = torch.zeros((self.n_users, 0), device=self.device)
        self.register_buffer("sampled_items", empty.long(), persistent=False)
        self.register_buffer("soft_labels", empty, persistent=False)
        self.sampled_epoch = None

    def start_epoch(self, epoch):
        """Rank-aware samples of every user for ``epoch``, with the teacher's soft labels."""
        if self.sampled_epoch == epoch:
            return
        positions = sample_interesting(
            self.n_users, self.teacher_topn.shape[1], self.num_samples, self.rank_temperature,
            self.epoch_generator(epoch),
        )
        self.sampled_items = self.teacher_topn.gather(1, positions)
        teacher_scores = teacher_pair_scores(self.teacher_backbone.pair_scores, self.sampled_items)
        self.soft_labels = torch.sigmoid(teacher_scores / self.label_temperature)
        self.sampled_epoch = epoch

    def shared_state(self):
        return [self.teacher_topn, self.sampled_items, self.soft_labels]

    def cd_term(self, batch_users):
        """The CD term of the batch's unique users."""
        if self.sampled_epoch is None:
            self.start_epoch(0)  # used outside the trainer
        scores = self.student_backbone.pair_scores(batch_users, self.sampled_items[batch_users])
        return self.reduce(cd_loss(scores, self.soft_labels[batch_users]))

    def calculate_loss(self, interaction):
        batch_users = torch.unique(interaction[self.USER_ID])
        with self.student_backbone.training_step():
            return self.base_loss(interaction), self.weighted_term(self.lambda_cd, self.cd_term, batch_users)
