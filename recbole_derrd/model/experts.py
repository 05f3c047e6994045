r"""
recbole_derrd.model.experts
###########################
Distillation Experts (DE), Section 3.1 of

    SeongKu Kang, Junyoung Hwang, Wonbin Kweon, Hwanjo Yu. "DE-RRD: A Knowledge Distillation
    Framework for Recommender System." In CIKM 2020.

For one side (users, or items), ``M`` experts map a student representation to the teacher's
space, a selection network reads the teacher representation and picks (softly, through a
Gumbel-softmax) which expert reconstructs it:

.. math::
    E_m(h_s) = W^{(2)}_m \,\mathrm{ReLU}(W^{(1)}_m h_s + b^{(1)}_m) + b^{(2)}_m, \qquad
    \alpha = \mathrm{softmax}(W_{sel} h_t + b_{sel})

    s_m = \frac{\exp((\log\alpha_m + g_m)/\tau)}{\sum_i \exp((\log\alpha_i + g_i)/\tau)},
    \quad g \sim \mathrm{Gumbel}(0, 1)

    \mathcal{L}_{DE} = \Big\lVert h_t - \sum_m s_m E_m(h_s) \Big\rVert_2^2

with the temperature annealed per epoch, :math:`\tau(e) = \tau_0 (\tau_P/\tau_0)^{e/P}`.
The experts are training-only: the deployed student never calls them.

The paper's ablation (Table 4) replaces the selection with ``attention`` (a softmax mix of all
experts, no sampling), ``single`` (one expert of the normal size) or ``single_large`` (one expert
as large as all M experts together); ``selection`` chooses among them.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def annealed_temperature(epoch, tau_start, tau_end, anneal_epochs):
    r"""Selection temperature at ``epoch``: :math:`\tau_0 (\tau_P / \tau_0)^{e / P}` (held at
    :math:`\tau_P` after ``anneal_epochs``)."""
    progress = min(max(epoch, 0), anneal_epochs) / max(anneal_epochs, 1)
    return tau_start * (tau_end / tau_start) ** progress


def de_loss(teacher_repr, reconstruction):
    r"""Per-entity DE loss :math:`\lVert h_t - \hat h_t \rVert_2^2`, shape ``[n_entities]``."""
    return (teacher_repr - reconstruction).pow(2).sum(dim=-1)


class DistillationExperts(nn.Module):
    r"""``num_experts`` experts ``d_s -> (d_s + d_t) // 2 -> d_t`` and their selection network,
    computed as one batched operation over all experts.

    Args:
        student_dim (int): dimension of the student representation ``h_s``.
        teacher_dim (int): dimension of the teacher representation ``h_t``.
        num_experts (int): number of experts ``M``.
        selection (str): ``gumbel`` (the paper's), ``attention``, ``single`` or ``single_large``.
    """

    selections = ("gumbel", "attention", "single", "single_large")

    def __init__(self, student_dim, teacher_dim, num_experts, selection="gumbel"):
        super().__init__()
        if selection not in self.selections:
            raise ValueError(f"selection must be one of {self.selections}, got {selection!r}")
        self.student_dim = student_dim
        self.teacher_dim = teacher_dim
        self.selection_mode = selection
        self.hidden_dim = (student_dim + teacher_dim) // 2
        if selection.startswith("single"):
            # one expert; single_large has the capacity of all M experts together
            self.hidden_dim *= num_experts if selection == "single_large" else 1
            num_experts = 1
        self.num_experts = num_experts
        self.first_weight = nn.Parameter(torch.empty(num_experts, student_dim, self.hidden_dim))
        self.first_bias = nn.Parameter(torch.empty(num_experts, self.hidden_dim))
        self.second_weight = nn.Parameter(torch.empty(num_experts, self.hidden_dim, teacher_dim))
        self.second_bias = nn.Parameter(torch.empty(num_experts, teacher_dim))
        self.selection = nn.Linear(teacher_dim, num_experts) if num_experts > 1 else None
        self.reset_parameters()

    def reset_parameters(self):
        """Each expert initialised as ``nn.Linear`` initialises itself: U(-1/sqrt(fan_in), .)."""
        for weight, bias in (
            (self.first_weight, self.first_bias),
            (self.second_weight, self.second_bias),
        ):
            bound = 1.0 / math.sqrt(weight.shape[1])
            nn.init.uniform_(weight, -bound, bound)
            nn.init.uniform_(bias, -bound, bound)
        if self.selection is not None:
            self.selection.reset_parameters()

    def selection_logits(self, teacher_repr):
        r"""Logits of :math:`\alpha`, shape ``[n_entities, M]``."""
        return self.selection(teacher_repr)

    def selection_weights(self, teacher_repr, tau):
        r"""Selection :math:`s`, shape ``[n_entities, M]``, rows sum to 1.

        ``gumbel``: a soft Gumbel-softmax sample; ``gumbel_softmax`` on the logits equals the
        paper's form on :math:`\log\alpha`, which differs from the logits by a per-row
        constant. ``attention``: :math:`\alpha` itself. A single expert: all ones.
        """
        if self.selection is None:
            return teacher_repr.new_ones(teacher_repr.shape[0], 1)
        logits = self.selection_logits(teacher_repr)
        if self.selection_mode == "attention":
            return torch.softmax(logits, dim=-1)
        return F.gumbel_softmax(logits, tau=tau, hard=False)

    def expert_hidden(self, student_repr):
        """First layer of every expert, ``[n_entities, M, hidden]``."""
        hidden = torch.einsum("ed,mdh->emh", student_repr, self.first_weight)
        return F.relu(hidden + self.first_bias)

    def reconstruct(self, student_repr, selection):
        r""":math:`\sum_m s_m E_m(h_s)`, shape ``[n_entities, d_t]``.

        The mixture is linear in each expert's second layer, so it is computed as one matmul
        of the selection-weighted hidden units (``[E, M*hidden]``) with the stacked second
        layers, without materialising the ``[E, M, d_t]`` outputs of every expert.
        """
        weighted_hidden = selection.unsqueeze(-1) * self.expert_hidden(student_repr)
        n_entities = student_repr.shape[0]
        mixed = weighted_hidden.reshape(n_entities, -1) @ self.second_weight.reshape(
            -1, self.teacher_dim
        )
        return mixed + selection @ self.second_bias

    def forward(self, student_repr, teacher_repr, tau):
        """Per-entity DE loss, shape ``[n_entities]``; gradients reach the student
        representation, the experts and the selection network (the teacher is frozen)."""
        selection = self.selection_weights(teacher_repr, tau)
        return de_loss(teacher_repr, self.reconstruct(student_repr, selection))
