r"""
HTD
################################################
Reference:
    SeongKu Kang, Junyoung Hwang, Wonbin Kweon, Hwanjo Yu. "Topology Distillation for
    Recommender System." In KDD 2021 (arXiv:2106.08700).

Topology distillation transfers the *relations* among entities in the teacher's representation
space, not the representations themselves. For the entities of a batch (the batch's unique
users, and separately its unique items, positives and negatives), a relation is the cosine
similarity :math:`\rho` of two representations; the teacher's relations are computed on its
frozen representations.

**FTD** (full topology distillation, ``htd_flat: True``): the student's relations, on its own
representations (cosine needs no common dimension), match the teacher's over every pair:

.. math::
    \mathcal{L}_{FTD} = \lVert A^t - A^s \rVert_F^2, \qquad
    A^t_{ij} = \rho(h^t_i, h^t_j), \quad A^s_{ij} = \rho(h^s_i, h^s_j)

**HTD** (hierarchical topology distillation, the default): a compact student cannot hold the
whole topology, so it is decomposed.

- *Preference groups*: a selection network reads the teacher representation and assigns every
  entity to one of ``K`` groups (``htd_num_groups``) by a Gumbel-softmax,
  :math:`z_i = \text{one-hot}\big(\arg\max_k (\log\alpha_{ik} + g_k)\big)`,
  :math:`\alpha_i = \mathrm{softmax}(W h^t_i + b)`, straight-through: one-hot forward, the
  gradient of the soft sample at temperature :math:`\tau` backward (:func:`group_assignment`),
  with :math:`\tau` annealed per epoch as DE anneals its selection (``htd_tau_start``,
  ``htd_tau_end``, ``htd_anneal_epochs``; :func:`~recbole_derrd.model.experts.annealed_temperature`).
- Each group has a mapping of the student representation into the teacher space (DE's experts,
  :class:`~recbole_derrd.model.experts.DistillationExperts`, one per group):
  :math:`\hat h^s_i = \sum_k z_{ik} f_k(h^s_i)`.
- *Prototypes*: a group's prototype is the mean of its members' representations,
  :math:`p^t_k`, :math:`p^s_k` (teacher, mapped student).
- The student preserves the group-level topology (relations among the non-empty groups'
  prototypes), and the entity-level topology: each entity's relations to every non-empty
  group's prototype, and the full relations among the entities of one group:

.. math::
    \mathcal{L}_{HTD} = \alpha\, \mathcal{L}_{group} + (1 - \alpha) (\mathcal{L}_{entity\text{-}group}
    + \mathcal{L}_{within}), \qquad
    \mathcal{L}_{within} = \sum_{i \ne j} z_i^\top z_j \big(\rho(h^t_i, h^t_j) - \rho(\hat h^s_i, \hat h^s_j)\big)^2

with :math:`\alpha` = ``htd_alpha``. The loss is computed for users and for items, and
:math:`\mathcal{L} = \mathcal{L}_{base} + \lambda_{HTD} (\mathcal{L}^{user}_{TD} + \mathcal{L}^{item}_{TD})`.

Reduction (``loss_reduction``): ``sum`` sums the squared differences of each level (the
paper's squared Frobenius norms); ``mean`` averages them over the level's relations (ordered
pairs of distinct entities, entity x non-empty group, ordered pairs of distinct non-empty
groups), so that the weight does not depend on the batch size. Relations of an entity (or a
group) with itself are 1 on both sides and left out.

Identities (tests/test_htd.py): with ``K = 1`` every entity is in the one group, the group
level is empty and :math:`\mathcal{L}_{within}` is :math:`\mathcal{L}_{FTD}` on the mapped
student representations.

Everything is vectorised: one-hot assignments as a matrix, group masks as :math:`Z Z^\top`, the
experts as one batched product; no loop over entities or groups. The selection network and
the experts are training-only: the deployed student is the backbone alone.

Cost. The forward pass needs each entity's own group's mapping only, but the straight-through
gradient of the assignment reaches every group's mapping, weighted by the soft sample: computed
densely, every entity passes through all ``K`` mappings at every step (most of an HTD step).
As the temperature anneals the soft sample concentrates on the entity's own group; the other
groups' pairs with a soft weight below ``htd_weight_floor`` are left out of the gradient
(:func:`mapped_pairs`), and the mappings are computed over the remaining pairs only where that
pays (DE's sparse routing). ``htd_weight_floor: 0`` is the exact dense computation.

After annealing, the within-group level dominates: its value needs the pairs of one group only,
but the assignment's straight-through gradient needs the relation differences :math:`E` of
every pair (:math:`\partial \mathcal{L}_{within} / \partial Z \propto (E \circ E) Z`, the
diagonal left out), so it is computed over the whole batch, ``O(n^2 d)``, in one function with
its own backward (:func:`masked_relation_loss`: the same values and gradients as autograd, in
about half the time).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_derrd.model.backbones import backbone_class, with_side_tables
from recbole_derrd.model.derrd import MIN_SELECTION_TAU
from recbole_derrd.model.distiller import Distiller
from recbole_derrd.model.experts import DistillationExperts, annealed_temperature, pop_routing_stats
from recbole_derrd.settings.registry import register_distiller


def cosine_relations(left, right=None):
    r""":math:`\rho(a_i, b_j)` for every row ``i`` of ``left`` and ``j`` of ``right`` (default
    ``left``): ``[n, m]``. A zero vector has relation 0 to everything."""
    left = F.normalize(left, dim=-1)
    right = left if right is None else F.normalize(right, dim=-1)
    return left @ right.T


def reduce_total(total, weight_total, reduction):
    """``total`` (``sum``), or ``total`` over the (detached) ``weight_total`` (``mean``: the mean
    over the relations the weights select; 0 when none)."""
    if reduction == "sum":
        return total
    return total / weight_total.detach().clamp(min=1)


def reduce_relations(squared_differences, weights, reduction):
    """The sum of ``weights * squared_differences``, summed or averaged (:func:`reduce_total`)."""
    return reduce_total((weights * squared_differences).sum(), weights.sum(), reduction)


def off_diagonal(n, device=None):
    """``[n, n]`` float mask, 1 off the diagonal."""
    return 1.0 - torch.eye(n, device=device)


class _MaskedRelationDifferences(torch.autograd.Function):
    r""":math:`\sum_{i \ne j} (Z Z^\top)_{ij} (\rho^t_{ij} - \rho^s_{ij})^2` and
    :math:`\sum_{i \ne j} (Z Z^\top)_{ij}` from unit-norm teacher and student rows and the
    assignment ``Z``; the same value and gradients as autograd through the dense formula, with
    less work on the ``[n, n]`` matrices that dominate a topology step: the subtraction
    :math:`T - S` folded into the second product, no float masks, and the gradients of the
    symmetric products :math:`S = N N^\top`, :math:`T` and :math:`Z Z^\top` as one product
    each (:math:`\partial / \partial N = (G + G^\top) N = 2 G N` for a symmetric ``G``)
    instead of autograd's two. First derivatives only."""

    @staticmethod
    def forward(ctx, teacher_unit, student_unit, assignment):
        # in place where it can be: each [n, n] temporary is fresh memory the kernel must zero,
        # a third of a step's time on the CPU
        difference = (teacher_unit @ teacher_unit.T).addmm_(student_unit, student_unit.T, alpha=-1)
        same_group = assignment @ assignment.T
        # pairs i != j only: a zero row's relation to itself is 0, not 1, so E_ii can be nonzero
        same_group.fill_diagonal_(0)
        weight_total = same_group.sum()
        weighted_difference = same_group.mul_(difference)
        total = torch.dot(weighted_difference.view(-1), difference.view(-1))
        ctx.mark_non_differentiable(weight_total)
        ctx.save_for_backward(teacher_unit, student_unit, assignment, difference, weighted_difference)
        return total, weight_total

    @staticmethod
    def backward(ctx, grad_total, _grad_weight_total):
        if torch.is_grad_enabled():  # backward(create_graph=True): its saved values are not a graph
            raise RuntimeError("HTD's relation loss has first derivatives only (create_graph=True is not supported)")
        teacher_unit, student_unit, assignment, difference, weighted_difference = ctx.saved_tensors
        grad_teacher = grad_student = grad_assignment = None
        # d total / d T = 2 (Z Z^T o E) = -d total / d S, symmetric
        if ctx.needs_input_grad[0]:
            grad_teacher = weighted_difference.mm(teacher_unit).mul_(4 * grad_total)
        if ctx.needs_input_grad[1]:
            grad_student = weighted_difference.mm(student_unit).mul_(-4 * grad_total)
        if ctx.needs_input_grad[2]:  # d total / d (Z Z^T) = E o E off the diagonal
            squared = difference.square()
            squared.fill_diagonal_(0)
            grad_assignment = squared.mm(assignment).mul_(2 * grad_total)
        return grad_teacher, grad_student, grad_assignment


def masked_relation_loss(teacher_repr, student_repr, assignment, reduction):
    r"""The squared differences of the teacher's and the student's relations over the ordered
    pairs of distinct entities that share a group (``assignment``, ``[n, K]``: its rows'
    products weight the pairs), summed or averaged over those pairs
    (:func:`reduce_relations`)."""
    total, weight_total = _MaskedRelationDifferences.apply(
        F.normalize(teacher_repr, dim=-1), F.normalize(student_repr, dim=-1), assignment)
    if reduction == "sum":
        return total
    return total / weight_total.detach().clamp(min=1)


def ftd_loss(teacher_repr, student_repr, reduction="mean"):
    r""":math:`\mathcal{L}_{FTD}`: the squared differences of the teacher's and the student's
    relations over every ordered pair of distinct entities, summed or averaged."""
    return masked_relation_loss(teacher_repr, student_repr, teacher_repr.new_ones(len(teacher_repr), 1), reduction)


def htd_losses(teacher_repr, student_repr, assignment, reduction="mean"):
    r"""The three levels of HTD, ``(group, entity_group, within)``.

    Args:
        teacher_repr (torch.Tensor): ``[n, d_t]`` teacher representations.
        student_repr (torch.Tensor): ``[n, d_t]`` student representations mapped to the
            teacher space.
        assignment (torch.Tensor): ``[n, K]`` group assignment (one-hot rows; straight-through
            gradients reach it through the prototypes and the group masks).
        reduction (str): ``mean`` or ``sum``.
    """
    counts = assignment.sum(dim=0)  # [K]
    present = (counts.detach() > 0).to(teacher_repr.dtype)
    scale = counts.clamp(min=1).unsqueeze(1)
    teacher_prototypes = assignment.T @ teacher_repr / scale  # [K, d_t], means of the members
    student_prototypes = assignment.T @ student_repr / scale
    n_groups = assignment.shape[1]

    group_difference = (cosine_relations(teacher_prototypes) - cosine_relations(student_prototypes)).pow(2)
    group_weights = present.unsqueeze(1) * present.unsqueeze(0) * off_diagonal(n_groups, teacher_repr.device)
    group = reduce_relations(group_difference, group_weights, reduction)

    entity_group_difference = (
        cosine_relations(teacher_repr, teacher_prototypes) - cosine_relations(student_repr, student_prototypes)
    ).pow(2)
    entity_group = reduce_relations(entity_group_difference, present.expand_as(entity_group_difference), reduction)

    within = masked_relation_loss(teacher_repr, student_repr, assignment, reduction)
    return group, entity_group, within


def group_assignment(logits, tau):
    r"""One-hot Gumbel-softmax sample of each row of ``logits`` (``[n, K]``), straight-through:
    the forward value is one-hot, the gradient is that of the soft sample at temperature
    ``tau``. ``softmax(logits)`` is :math:`\alpha`; Gumbel-softmax on the logits equals the
    paper's form on :math:`\log\alpha` (they differ by a per-row constant).

    Returns:
        tuple: ``(assignment, soft)``, the straight-through one-hot rows and the soft sample
        they were drawn from (detached).
    """
    soft = F.gumbel_softmax(logits, tau=tau, hard=False)
    hard = torch.zeros_like(soft).scatter_(-1, soft.detach().argmax(dim=-1, keepdim=True), 1.0)
    return hard - soft.detach() + soft, soft.detach()


def mapped_pairs(assignment, soft, weight_floor):
    r"""The (entity, group) pairs whose mapping :math:`f_k(h^s_i)` is computed: each entity's
    own group, and the other groups whose soft weight is at least ``weight_floor`` (all pairs
    when ``weight_floor = 0``).

    Forward, :math:`\hat h^s_i` is the own group's mapping alone (the assignment is one-hot);
    the other groups' mappings enter only the straight-through gradient of the assignment,
    scaled by their soft weights. Below the floor these are dropped, as DE drops selection
    weights below ``de_weight_floor``: once the temperature has annealed, each entity's
    mapping then costs one group's two layers instead of ``K``."""
    if weight_floor <= 0:
        return torch.ones_like(soft, dtype=torch.bool)
    return (assignment.detach() > 0.5) | (soft >= weight_floor)


def floored_mapping_weights(assignment, pairs):
    r"""The weights of the mappings :math:`\hat h^s_i = \sum_k w_{ik} f_k(h^s_i)` with the pairs
    outside ``pairs`` dropped: their straight-through weights (0 in value) are moved onto the
    entity's own group, so that their soft weights' gradient sees the own group's mapping
    instead of theirs.

    The assignment's gradient through the mapping, for the logit of group ``j``, is
    :math:`\tfrac{1}{\tau} s_j (G_j - \sum_k s_k G_k)` with :math:`G_k` the loss's gradient
    along :math:`f_k(h^s_i)`: it depends on the differences :math:`G_k - G_{own}` only. Zeroing a
    dropped pair would set its :math:`G_k` to 0, a spurious difference as large as
    :math:`G_{own}` itself; moving it onto the own group sets :math:`G_k = G_{own}`, so the
    dropped pairs contribute nothing and the gradient is that of the kept pairs. The forward
    value is unchanged (the moved weights sum to exactly 0)."""
    own = (assignment.detach() > 0.5).to(assignment.dtype)
    dropped = assignment.masked_fill(pairs, 0.0).sum(dim=1, keepdim=True)
    return assignment.masked_fill(~pairs, 0.0) + own * dropped


class TopologyGroups(nn.Module):
    r"""HTD's training-only modules for one side (users or items): the selection network that
    assigns entities to ``K`` groups from their teacher representation, and one mapping of the
    student representation into the teacher space per group (DE's experts; over the pairs kept
    by :func:`mapped_pairs` where that pays).

    Args:
        student_dim (int), teacher_dim (int): representation sizes.
        num_groups (int): K.
        weight_floor (float): soft assignment weight below which a group's mapping is left
            out of an entity's straight-through gradient (:func:`mapped_pairs`); 0 = none.
    """

    def __init__(self, student_dim, teacher_dim, num_groups, weight_floor=0.0):
        super().__init__()
        self.num_groups = num_groups
        self.weight_floor = float(weight_floor)
        # gumbel: a selection network (K > 1); the assignment itself is drawn here, hard. The
        # mappings of the pairs kept are computed over those pairs only where that pays
        # (routing auto: on the CPU, once few pairs are left)
        self.experts = DistillationExperts(student_dim, teacher_dim, num_groups, "gumbel",
                                           weight_floor=self.weight_floor, routing="auto")

    def assign(self, teacher_repr, tau):
        """``([n, K] one-hot assignment (straight-through), its soft sample)``; all ones for
        ``K = 1``."""
        if self.experts.selection is None:
            ones = teacher_repr.new_ones(teacher_repr.shape[0], 1)
            return ones, ones
        return group_assignment(self.experts.selection_logits(teacher_repr), tau)

    def forward(self, student_repr, teacher_repr, tau, alpha, reduction):
        r""":math:`\mathcal{L}_{HTD}` of one side's entities, and the number of non-empty groups."""
        assignment, soft = self.assign(teacher_repr, tau)
        pairs = mapped_pairs(assignment, soft, self.weight_floor)
        mapping_weights = floored_mapping_weights(assignment, pairs)
        mapped = self.experts.reconstruct(student_repr, mapping_weights, active=pairs)
        group, entity_group, within = htd_losses(teacher_repr, mapped, assignment, reduction)
        loss = alpha * group + (1 - alpha) * (entity_group + within)
        return loss, (assignment.detach().sum(0) > 0).sum()


@register_distiller
class HTD(Distiller):
    r"""A student backbone distilled with topology distillation: hierarchical (HTD, the
    default) or full (FTD, ``htd_flat: True``), on the batch's users and items. Inference is
    the plain student."""

    loss_names = ("base", "htd")
    loss_weight_keys = ("lambda_htd",)
    shape_keys = ("htd_num_groups", "htd_flat")
    logged_diagnostics = {"tau": ("tau", ".3g"), "groups_used": ("groups/batch", ".2f")}
    sides = ("user", "item")

    @classmethod
    def check_keys(cls, checker):
        super().check_keys(checker)
        num_groups = checker.integer("htd_num_groups", minimum=1)
        checker.boolean("htd_flat")
        alpha = checker.number("htd_alpha", minimum=0)
        if alpha is not None and alpha > 1:
            checker.fail(f"htd_alpha must be in [0, 1] (the group level's share), got {alpha}")
        floor = checker.number("htd_weight_floor", minimum=0)
        if floor is not None and num_groups is not None and num_groups >= 1 and floor >= 1 / num_groups:
            checker.fail(
                f"htd_weight_floor ({floor}) must be below 1/htd_num_groups ({1 / num_groups:.4g}): "
                "at a floor that high even an evenly spread assignment would keep only each "
                "entity's own group in the gradient"
            )
        checker.number("htd_tau_start", minimum=MIN_SELECTION_TAU)
        checker.number("htd_tau_end", minimum=MIN_SELECTION_TAU)
        checker.integer("htd_anneal_epochs", minimum=1, optional=True)
        config = checker.config
        teacher = config["teacher_model"]
        if not config["teacher_checkpoint"] and isinstance(teacher, str) \
                and not backbone_class(teacher).defines_side_tables():
            checker.fail(
                f"HTD distils the teacher's user and item representations, and none is defined "
                f"for teacher_model {teacher} ({', '.join(with_side_tables())} have one)"
            )

    @classmethod
    def schedule_settings(cls, config):
        """The assignment's annealing lasts ``htd_anneal_epochs``, by default ``epochs``."""
        return {"htd_anneal_epochs": config["htd_anneal_epochs"] or config["epochs"]}

    def __init__(self, config, dataset, teacher=None, split=None):
        super().__init__(config, dataset, teacher=teacher, split=split)
        self.lambda_htd = config["lambda_htd"]
        self.flat = config["htd_flat"]
        self.alpha = config["htd_alpha"]
        self.tau_start, self.tau_end = config["htd_tau_start"], config["htd_tau_end"]
        self.anneal_epochs = config["htd_anneal_epochs"] or config["epochs"]
        self.selection_tau = self.tau_start
        groups = {}
        for side in self.sides:
            target = self.teacher_backbone.side_representation(side).detach().clone()
            self.register_buffer(f"teacher_{side}_repr", target, persistent=False)
            if not self.flat:
                student_dim = self.student_backbone.side_representation(side).shape[1]
                groups[side] = TopologyGroups(student_dim, target.shape[1], config["htd_num_groups"],
                                              weight_floor=config["htd_weight_floor"])
        self.groups = nn.ModuleDict(groups) if groups else None
        self.reset_diagnostics()

    def reset_diagnostics(self):
        self.groups_used, self.group_calls = 0, 0

    def teacher_repr(self, side):
        return getattr(self, f"teacher_{side}_repr")

    def start_epoch(self, epoch):
        r"""Anneal the assignment's temperature :math:`\tau` for ``epoch``."""
        self.selection_tau = annealed_temperature(epoch, self.tau_start, self.tau_end, self.anneal_epochs)

    def epoch_diagnostics(self):
        """The assignment temperature of the epoch, the mean number of non-empty groups of a
        side's batch, and the mean number of group mappings computed per entity (HTD)."""
        if self.flat:
            return {}
        used = float(self.groups_used) / max(self.group_calls, 1)
        self.reset_diagnostics()
        mappings_per_entity, _ = pop_routing_stats([groups.experts for groups in self.groups.values()])
        return {"tau": self.selection_tau, "groups_used": used, "mappings_per_entity": mappings_per_entity}

    def shared_state(self):
        return [self.teacher_repr(side) for side in self.sides]

    def side_term(self, side, entities):
        """The topology loss of one side's entities (unique ids)."""
        student_repr = self.student_backbone.side_representation(side).index_select(0, entities)
        teacher_repr = self.teacher_repr(side)[entities]
        if self.flat:
            return ftd_loss(teacher_repr, student_repr, self.loss_reduction)
        loss, used = self.groups[side](student_repr, teacher_repr, self.selection_tau, self.alpha,
                                       self.loss_reduction)
        self.groups_used = self.groups_used + used  # a tensor: no device sync per step
        self.group_calls += 1
        return loss

    def htd_term(self, interaction):
        r""":math:`\mathcal{L}^{user}_{TD} + \mathcal{L}^{item}_{TD}` of the batch."""
        users = torch.unique(interaction[self.USER_ID])
        items = torch.unique(torch.cat(self.batch_items(interaction)))
        return self.side_term("user", users) + self.side_term("item", items)

    def calculate_loss(self, interaction):
        with self.student_backbone.training_step():
            return self.base_loss(interaction), self.weighted_term(self.lambda_htd, self.htd_term, interaction)
