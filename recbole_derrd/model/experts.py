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

Cost. Computed densely, every entity passes through all ``M`` experts, which makes DE the
expensive part of DE-RRD. As :math:`\tau` anneals, each entity's selection concentrates on one
or a few experts; the others get weights so small that they change nothing but still cost a
full pass (and, once they reach float32's subnormal range, stall Intel CPUs in every product
they touch). So selection weights below ``weight_floor`` are set to exactly zero before they
meet the expert activations (:func:`floor_selection`), and once few (entity, expert) pairs are
left the mixture is computed over those pairs only, grouped by expert
(:meth:`DistillationExperts.sparse_reconstruct`). ``weight_floor = 0`` is the plain dense
computation.
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


#: The longest default annealing (``de_anneal_epochs: ~``), RecBole's default ``epochs``.
DEFAULT_ANNEAL_EPOCHS = 300


def anneal_length(configured, epochs):
    r""":math:`P`, the epochs of annealing: ``configured`` where set; else the run's ``epochs``,
    at most :data:`DEFAULT_ANNEAL_EPOCHS`. The paper anneals over its epoch cap, and its runs stop
    with a near one-hot selection; an ``epochs`` set as a far cap that early stopping comes long
    before (2,000 in the benchmark's ``converged.yaml``) would leave the selection soft where the
    runs stop (:math:`\tau` 0.1 at epoch 200). Measured on two datasets: ``results/anneal/``."""
    return configured or min(epochs, DEFAULT_ANNEAL_EPOCHS)


def routing_settled(experts_per_entity, tolerance):
    r"""Whether DE's routing has settled: the mean number of experts an entity was routed to
    (``experts_per_entity``, one figure per epoch, in order) changed by at most ``tolerance``
    (a fraction) over the last epoch. While the selection network learns which experts
    reconstruct whom, the count falls fast (on ml-100k from 28 to 3 of 30 experts in 25
    epochs); then slowly, towards one."""
    if len(experts_per_entity) < 2:
        return False
    previous, current = experts_per_entity[-2:]
    return abs(current - previous) <= tolerance * previous


def floor_selection(selection, weight_floor):
    r"""Selection weights below ``weight_floor`` set to exactly zero (no gradient reaches them).

    A weight below the floor contributes less than ``weight_floor`` of one expert's output to
    :math:`\sum_m s_m E_m(h_s)`; dropping it keeps subnormal floats (slow on Intel CPUs) out of
    the mixture and its backward pass, and lets the mixture skip that expert. The largest weight
    of a row is at least ``1/M``, so a floor below ``1/M`` never empties a row.
    """
    if weight_floor <= 0:
        return selection
    return selection.masked_fill(selection < weight_floor, 0.0)


def pop_routing_stats(banks):
    """The routing counters of several :class:`DistillationExperts` (e.g. the users' and the
    items'), pooled and reset: ``(active pairs per entity, share of mixtures computed
    sparsely)`` since the last call."""
    stats = [experts.routing_stats for experts in banks]
    for experts in banks:
        experts.reset_routing_stats()
    entities = sum(bank["entities"] for bank in stats)
    calls = sum(bank["calls"] for bank in stats)
    return (float(sum(bank["active_pairs"] for bank in stats)) / max(entities, 1),
            sum(bank["sparse_calls"] for bank in stats) / max(calls, 1))


def de_loss(teacher_repr, reconstruction):
    r"""Per-entity DE loss :math:`\lVert h_t - \hat h_t \rVert_2^2`, shape ``[n_entities]``."""
    return (teacher_repr - reconstruction).pow(2).sum(dim=-1)


class DistillationExperts(nn.Module):
    r"""``num_experts`` experts ``d_s -> (d_s + d_t) // 2 -> d_t`` and their selection network.

    The mixture is computed densely (one batched product over all experts) or sparsely (only
    the (entity, expert) pairs whose weight survives ``weight_floor``, grouped by expert), as
    ``routing`` says: ``auto`` picks sparse when its padded work is at most
    :attr:`sparse_work_fraction` of the dense work (on the CPU; on a GPU ``auto`` stays dense).

    Args:
        student_dim (int): dimension of the student representation ``h_s``.
        teacher_dim (int): dimension of the teacher representation ``h_t``.
        num_experts (int): number of experts ``M``.
        selection (str): ``gumbel`` (the paper's), ``attention``, ``single`` or ``single_large``.
        weight_floor (float): selection weights below it are exactly zero; ``0`` = none dropped.
        routing (str): ``auto``, ``dense`` or ``sparse``.
    """

    selections = ("gumbel", "attention", "single", "single_large")
    routings = ("auto", "dense", "sparse")
    #: Bounds of the rows of one expert's tile in the sparse product. Per call, a tile holds
    #: the mean number of active pairs per expert (rounded up to a power of two, within these
    #: bounds): few enough that padding each expert's group to whole tiles wastes little, many
    #: enough that each tile is one efficient matmul.
    tile_rows_bounds = (16, 64)
    #: ``auto`` goes sparse when the padded active rows are at most this fraction of the dense
    #: ``entities x M`` rows (measured on the CPU, ``run_scripts/bench_speed.py --parts=routing``).
    sparse_work_fraction = 0.5

    def __init__(
        self, student_dim, teacher_dim, num_experts, selection="gumbel", weight_floor=0.0, routing="auto"
    ):
        super().__init__()
        if selection not in self.selections:
            raise ValueError(f"selection must be one of {self.selections}, got {selection!r}")
        if routing not in self.routings:
            raise ValueError(f"routing must be one of {self.routings}, got {routing!r}")
        self.weight_floor = float(weight_floor)
        self.routing = routing
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
        if not 0 <= self.weight_floor < 1 / num_experts:
            raise ValueError(
                f"weight_floor must be in [0, 1/M) = [0, {1 / num_experts:.4g}) so that every "
                f"entity keeps at least one expert, got {weight_floor}"
            )
        self.reset_routing_stats()
        self.reset_parameters()

    def reset_routing_stats(self):
        """Counters since the last reset: entities, active (entity, expert) pairs (a non-zero
        weight, or named by ``reconstruct``'s ``active``), and mixtures computed sparsely / in
        all (read once per epoch)."""
        self.routing_stats = {"entities": 0, "active_pairs": 0, "sparse_calls": 0, "calls": 0}

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
            selection = torch.softmax(logits, dim=-1)
        else:
            selection = F.gumbel_softmax(logits, tau=tau, hard=False)
        return floor_selection(selection, self.weight_floor)

    def expert_hidden(self, student_repr):
        """First layer of every expert, ``[n_entities, M, hidden]``."""
        hidden = torch.einsum("ed,mdh->emh", student_repr, self.first_weight)
        return F.relu(hidden + self.first_bias)

    def reconstruct(self, student_repr, selection, active=None):
        r""":math:`\sum_m s_m E_m(h_s)`, shape ``[n_entities, d_t]``, densely or over the active
        pairs only (``routing``); both give the same result up to float rounding.

        ``active`` (``[n_entities, M]`` bool): the pairs to compute, by default those of
        non-zero weight. A pair of weight zero in value can still carry a gradient to the
        selection (HTD's straight-through assignment): such pairs are named here. ``selection``
        must be zero outside ``active`` (in value and gradient), or the dense and the sparse
        computation differ."""
        n_entities, num_experts = selection.shape
        if active is None:
            active = selection > 0
        per_expert = active.sum(dim=0)
        stats = self.routing_stats
        stats["calls"] += 1
        stats["entities"] += n_entities
        stats["active_pairs"] = stats["active_pairs"] + per_expert.sum()  # a tensor: no GPU sync
        if self.weight_floor <= 0 or self.routing == "dense" or num_experts == 1:
            return self.dense_reconstruct(student_repr, selection)
        if self.routing == "auto":
            if selection.device.type != "cpu":  # not measured faster on a GPU: stay dense
                return self.dense_reconstruct(student_repr, selection)
            tile_rows = self.tile_rows(per_expert)
            padded_rows = int((torch.ceil(per_expert / tile_rows) * tile_rows).sum())
            if padded_rows > self.sparse_work_fraction * n_entities * num_experts:
                return self.dense_reconstruct(student_repr, selection)
        stats["sparse_calls"] += 1
        return self.sparse_reconstruct(student_repr, selection, active, per_expert)

    def tile_rows(self, per_expert):
        """Rows per tile for active pairs counted ``per_expert``: their mean per expert, as a
        power of two within :attr:`tile_rows_bounds`."""
        smallest, largest = self.tile_rows_bounds
        mean = max(int(per_expert.sum()) / len(per_expert), 1)
        return min(max(1 << math.ceil(math.log2(mean)), smallest), largest)

    def dense_reconstruct(self, student_repr, selection):
        r""":math:`\sum_m s_m E_m(h_s)` through every expert.

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

    def sparse_reconstruct(self, student_repr, selection, active, per_expert):
        r""":math:`\sum_m s_m E_m(h_s)` over the active (entity, expert) pairs only
        (``active``, ``[E, M]``; ``per_expert``, their count per expert).

        The pairs are grouped by expert and each expert's group padded to whole tiles of
        :meth:`tile_rows` rows; every tile then goes through its expert's two layers in one
        batched matmul (``[tiles, rows, d] @ [tiles, d, h]``), with no loop over experts, and
        the weighted outputs are summed back into their entities. Work is proportional to the
        active pairs (plus at most one partly filled tile per expert) instead of ``E x M``.
        """
        # nonzero of the transposed mask lists pairs expert by expert (entities ascending)
        pair_experts, pair_entities = active.t().nonzero(as_tuple=True)
        tile_rows = self.tile_rows(per_expert)
        tiles_per_expert = (per_expert + tile_rows - 1) // tile_rows
        tile_experts = torch.repeat_interleave(
            torch.arange(len(per_expert), device=selection.device), tiles_per_expert
        )
        # slot of each pair in the padded [tiles * tile_rows] layout: its expert's first tile
        # row plus its rank within the expert's group
        group_start = torch.cumsum(per_expert, 0) - per_expert
        first_row = (torch.cumsum(tiles_per_expert, 0) - tiles_per_expert) * tile_rows
        rank_in_group = torch.arange(len(pair_experts), device=selection.device) - group_start[pair_experts]
        slots = first_row[pair_experts] + rank_in_group
        padded_rows = len(tile_experts) * tile_rows

        padded_input = student_repr.new_zeros(padded_rows, self.student_dim).index_copy(
            0, slots, student_repr.index_select(0, pair_entities)
        )
        hidden = torch.baddbmm(
            self.first_bias.index_select(0, tile_experts).unsqueeze(1),
            padded_input.view(-1, tile_rows, self.student_dim),
            self.first_weight.index_select(0, tile_experts),
        )
        pair_weights = selection[pair_entities, pair_experts].unsqueeze(1)
        weighted_hidden = F.relu(hidden).view(padded_rows, self.hidden_dim).index_select(0, slots) * pair_weights
        padded_hidden = weighted_hidden.new_zeros(padded_rows, self.hidden_dim).index_copy(0, slots, weighted_hidden)
        outputs = torch.bmm(
            padded_hidden.view(-1, tile_rows, self.hidden_dim), self.second_weight.index_select(0, tile_experts)
        ).view(padded_rows, self.teacher_dim).index_select(0, slots)
        mixed = outputs.new_zeros(selection.shape[0], self.teacher_dim).index_add(0, pair_entities, outputs)
        return mixed + selection @ self.second_bias

    def forward(self, student_repr, teacher_repr, tau):
        """Per-entity DE loss, shape ``[n_entities]``; gradients reach the student
        representation, the experts and the selection network (the teacher is frozen)."""
        selection = self.selection_weights(teacher_repr, tau)
        return de_loss(teacher_repr, self.reconstruct(student_repr, selection))
