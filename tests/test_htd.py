"""HTD and FTD (Kang et al., KDD 2021): topology distillation of the teacher's relations among a
batch's users and items. The losses against explicit loops, the straight-through group
assignment and its annealing, the model on ml-100k, a short run, and the up-front checks."""

import math

import pytest
import torch

from recbole.utils import init_seed

from recbole_derrd import HTD, Config, run_recbole_derrd
from recbole_derrd.data.dataset import create_dataset, data_preparation
from recbole_derrd.files.export import export_student
from recbole_derrd.model.experts import annealed_temperature
from recbole_derrd.model.htd import (
    TopologyGroups, floored_mapping_weights, ftd_loss, group_assignment, htd_losses,
    mapped_pairs, masked_relation_loss,
)
from recbole_derrd.settings.validation import ConfigValueError
from recbole_derrd.benchmark.speed_kernels import dense_within_level
from recbole_derrd.teacher.loading import load_teacher


# ----- the losses, against explicit loops -----

def cosine(a, b):
    a, b = a.tolist(), b.tolist()
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def brute_ftd(teacher, student, reduction):
    n = len(teacher)
    terms = [(cosine(teacher[i], teacher[j]) - cosine(student[i], student[j])) ** 2
             for i in range(n) for j in range(n) if i != j]
    return sum(terms) if reduction == "sum" else sum(terms) / len(terms)


def brute_htd(teacher, student, groups, n_groups, reduction):
    """(group, entity_group, within) with explicit loops over groups, entities and pairs."""
    members = {k: [i for i, g in enumerate(groups) if g == k] for k in range(n_groups)}
    present = [k for k in range(n_groups) if members[k]]
    proto_t = {k: sum(teacher[i] for i in members[k]) / len(members[k]) for k in present}
    proto_s = {k: sum(student[i] for i in members[k]) / len(members[k]) for k in present}

    def reduce(terms):
        if not terms:
            return 0.0
        return sum(terms) if reduction == "sum" else sum(terms) / len(terms)

    group = [(cosine(proto_t[k], proto_t[l]) - cosine(proto_s[k], proto_s[l])) ** 2
             for k in present for l in present if k != l]
    entity_group = [(cosine(teacher[i], proto_t[k]) - cosine(student[i], proto_s[k])) ** 2
                    for i in range(len(teacher)) for k in present]
    within = [(cosine(teacher[i], teacher[j]) - cosine(student[i], student[j])) ** 2
              for k in present for i in members[k] for j in members[k] if i != j]
    return reduce(group), reduce(entity_group), reduce(within)


@pytest.fixture
def tensors():
    generator = torch.Generator().manual_seed(5)
    teacher = torch.randn(9, 6, generator=generator, dtype=torch.float64)
    student = torch.randn(9, 6, generator=generator, dtype=torch.float64)
    groups = [0, 2, 2, 4, 0, 0, 2, 4, 0]  # groups 1 and 3 empty
    return teacher, student, groups


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_ftd_loss_against_brute_force(tensors, reduction):
    teacher, student, _ = tensors
    assert ftd_loss(teacher, student, reduction).item() == pytest.approx(brute_ftd(teacher, student, reduction))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_htd_levels_against_brute_force(tensors, reduction):
    teacher, student, groups = tensors
    assignment = torch.nn.functional.one_hot(torch.tensor(groups), 5).double()
    actual = htd_losses(teacher, student, assignment, reduction)
    expected = brute_htd(teacher, student, groups, 5, reduction)
    for value, reference in zip(actual, expected):
        assert value.item() == pytest.approx(reference)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_one_group_is_ftd(tensors, reduction):
    """K = 1: no group pairs, and the within-group term is FTD's over the whole batch."""
    teacher, student, _ = tensors
    group, entity_group, within = htd_losses(teacher, student, torch.ones(len(teacher), 1, dtype=teacher.dtype),
                                             reduction)
    assert group.item() == 0
    assert within.item() == pytest.approx(ftd_loss(teacher, student, reduction).item())
    # and the entity-group term relates each entity to the batch mean
    mean_t, mean_s = teacher.mean(0), student.mean(0)
    terms = [(cosine(teacher[i], mean_t) - cosine(student[i], mean_s)) ** 2 for i in range(len(teacher))]
    assert entity_group.item() == pytest.approx(sum(terms) / (len(terms) if reduction == "mean" else 1))


def test_every_entity_in_its_own_group_leaves_only_the_prototype_levels(tensors):
    """K = n, one entity per group: no within-group pairs, and the prototypes are the entities,
    so the group level is FTD's relations."""
    teacher, student, _ = tensors
    group, _, within = htd_losses(teacher, student, torch.eye(len(teacher), dtype=teacher.dtype))
    assert within.item() == 0
    assert group.item() == pytest.approx(ftd_loss(teacher, student).item())


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_masked_relation_loss_has_autograds_value_and_gradients(reduction):
    """The fused within-group level (its own backward) against autograd through the dense
    formula (the reference ``bench_speed.py --parts=htd`` times it against): the same loss, the
    same gradients for the teacher, the student and the assignment's logits (straight-through)."""
    torch.manual_seed(3)
    teacher = torch.randn(40, 9, dtype=torch.float64)
    student = torch.randn(40, 9, dtype=torch.float64)
    # zero rows: their relation to themselves is 0, not 1, so only the diagonal's exclusion
    # keeps (0 - 1)^2 out of the loss and the gradients (the finite-difference test cannot see it)
    student[7] = 0
    teacher[11] = 0
    teacher.requires_grad_(True)
    student.requires_grad_(True)
    logits = torch.randn(40, 5, dtype=torch.float64, requires_grad=True)
    results = []
    for loss_function in (masked_relation_loss, dense_within_level):
        torch.manual_seed(4)  # the same Gumbel draw for both
        assignment, _ = group_assignment(logits, tau=0.5)
        loss = loss_function(teacher, student, assignment, reduction)
        results.append((loss.detach(), *torch.autograd.grad(loss, [teacher, student, logits])))
    (fused_loss, *fused_gradients), (dense_loss, *dense_gradients) = results
    assert fused_loss.item() == pytest.approx(dense_loss.item(), rel=1e-12)
    for fused, dense in zip(fused_gradients, dense_gradients):
        assert fused.abs().sum() > 0
        assert torch.allclose(fused, dense, rtol=1e-9, atol=1e-12)


def test_masked_relation_loss_refuses_second_derivatives():
    """Its backward is first-order only: a second derivative raises instead of being wrong."""
    student = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    loss = masked_relation_loss(torch.randn(6, 3, dtype=torch.float64), student,
                                torch.ones(6, 1, dtype=torch.float64), "sum")
    with pytest.raises(RuntimeError, match="first derivatives only"):
        torch.autograd.grad(loss, student, create_graph=True)
    assert torch.autograd.grad(loss, student)[0].abs().sum() > 0


def test_masked_relation_loss_gradients_by_finite_differences():
    """Its backward against finite differences, for soft (non one-hot) weights too."""
    torch.manual_seed(5)
    teacher = torch.randn(12, 4, dtype=torch.float64)
    student = torch.randn(12, 4, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(12, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s, z: masked_relation_loss(teacher, s, z, "sum"), (student, weights))


# ----- the group assignment -----

def test_group_assignment_is_one_hot_forward_with_straight_through_gradients():
    torch.manual_seed(0)
    logits = torch.randn(50, 6, requires_grad=True)
    assignment, soft = group_assignment(logits, tau=0.5)
    assert torch.equal(assignment.sum(1), torch.ones(50))
    assert set(assignment.unique().tolist()) == {0.0, 1.0}
    # the one-hot rows pick the soft sample's largest weight, which is not differentiated
    assert torch.equal(assignment.argmax(1), soft.argmax(1)) and not soft.requires_grad
    (assignment * torch.randn(50, 6)).sum().backward()
    assert logits.grad is not None and (logits.grad != 0).any()


def test_topology_groups_train_the_selection_and_the_mappings():
    torch.manual_seed(1)
    groups = TopologyGroups(student_dim=4, teacher_dim=7, num_groups=3)
    student = torch.randn(20, 4, requires_grad=True)
    loss, used = groups(student, torch.randn(20, 7), tau=1.0, alpha=0.5, reduction="mean")
    loss.backward()
    assert 1 <= int(used) <= 3
    assert groups.experts.selection.weight.grad.abs().sum() > 0
    assert groups.experts.first_weight.grad.abs().sum() > 0
    assert student.grad.abs().sum() > 0
    single = TopologyGroups(4, 7, num_groups=1)
    assert single.experts.selection is None
    assert torch.equal(single.assign(torch.randn(5, 7), 1.0)[0], torch.ones(5, 1))


# ----- the weight floor: which group mappings enter the straight-through gradient -----

def brute_floored_loss(groups, student, teacher, tau, floor, seed):
    """HTD of one side with every group's mapping computed per entity (no routing), the pairs
    below the floor (other than the entity's own group) masked out of the assignment's
    gradient by hand."""
    torch.manual_seed(seed)
    logits = groups.experts.selection_logits(teacher)
    assignment, soft = group_assignment(logits, tau)
    keep = [[bool(assignment[i, k] > 0.5 or soft[i, k] >= floor) for k in range(groups.num_groups)]
            for i in range(len(student))]
    kept = torch.tensor(keep, dtype=assignment.dtype)
    own = (assignment.detach() > 0.5).to(assignment.dtype)
    # a dropped pair's straight-through weight (0 in value) moves onto the entity's own group
    weights = assignment * kept + own * (assignment * (1 - kept)).sum(1, keepdim=True)
    experts = groups.experts
    outputs = torch.stack([  # [n, K, d_t]: each group's two layers, entity by entity
        torch.stack([torch.relu(student[i] @ experts.first_weight[k] + experts.first_bias[k])
                     @ experts.second_weight[k] + experts.second_bias[k] for k in range(groups.num_groups)])
        for i in range(len(student))])
    mapped = (weights.unsqueeze(-1) * outputs).sum(1)
    group, entity_group, within = htd_losses(teacher, mapped, assignment)
    return 0.5 * group + 0.5 * (entity_group + within), keep


@pytest.mark.parametrize("routing", ["dense", "sparse"])
@pytest.mark.parametrize("tau", [1.0, 0.05, 1e-4])
def test_floor_drops_only_small_soft_pairs_from_the_gradient(routing, tau):
    torch.manual_seed(11)
    groups = TopologyGroups(student_dim=4, teacher_dim=7, num_groups=5, weight_floor=1e-3)
    groups.experts.routing = routing
    student = torch.randn(40, 4, requires_grad=True)
    teacher = torch.randn(40, 7)
    torch.manual_seed(4)
    loss, _ = groups(student, teacher, tau, 0.5, "mean")
    gradients = torch.autograd.grad(loss, [student, groups.experts.selection.weight, groups.experts.first_weight])

    expected, keep = brute_floored_loss(groups, student, teacher, tau, 1e-3, seed=4)
    expected_gradients = torch.autograd.grad(
        expected, [student, groups.experts.selection.weight, groups.experts.first_weight])
    torch.testing.assert_close(loss, expected)
    for actual, wanted in zip(gradients, expected_gradients):
        torch.testing.assert_close(actual, wanted, rtol=1e-4, atol=1e-7)
    kept_pairs = sum(map(sum, keep))
    assert int(groups.experts.routing_stats["active_pairs"]) == kept_pairs
    if tau == 1e-4:
        assert kept_pairs == 40  # annealed: one mapping per entity


def mapping_path_gradient(logits, outputs, directions, tau, floor):
    """The logits' gradient of <directions, mapped> alone (the mapping path of the assignment)."""
    torch.manual_seed(9)
    assignment, soft = group_assignment(logits, tau)
    pairs = mapped_pairs(assignment, soft, floor)
    mapped = (floored_mapping_weights(assignment, pairs).unsqueeze(-1) * outputs).sum(1)
    return torch.autograd.grad((mapped * directions).sum(), logits)[0], pairs


@pytest.mark.parametrize("tau", [0.3, 0.05, 0.01])
def test_floored_assignment_gradient_stays_close_to_the_exact_one(tau):
    torch.manual_seed(3)
    logits = (2 * torch.randn(300, 6)).requires_grad_()
    outputs, directions = torch.randn(300, 6, 5), torch.randn(300, 5)
    exact, _ = mapping_path_gradient(logits, outputs, directions, tau, 0.0)
    floored, pairs = mapping_path_gradient(logits, outputs, directions, tau, 1e-3)
    assert (~pairs).sum() > 300  # pairs were dropped
    assert (floored - exact).norm() <= 0.01 * exact.norm()


def test_identical_mappings_give_the_assignment_no_gradient_floored_or_not():
    """The straight-through gradient through the mappings depends on their differences only:
    with every group's mapping equal it is exactly zero; a dropped pair must not leave its
    mapping's place empty (which would read as a difference of the whole mapping)."""
    torch.manual_seed(3)
    logits = (2 * torch.randn(100, 6)).requires_grad_()
    outputs = torch.randn(100, 1, 5).expand(100, 6, 5)
    for floor in (0.0, 1e-3):
        gradient, pairs = mapping_path_gradient(logits, outputs, torch.randn(100, 5), 0.05, floor)
        assert floor == 0 or (~pairs).any()
        torch.testing.assert_close(gradient, torch.zeros_like(gradient), atol=1e-5, rtol=0)


def test_floor_changes_neither_the_loss_nor_the_student_gradient():
    """The forward pass uses each entity's own group only: the floor drops nothing from the
    loss or the gradients of the student and the mappings, only from the selection's."""
    results = []
    for floor in (0.0, 1e-3):
        torch.manual_seed(2)
        groups = TopologyGroups(4, 7, 5, weight_floor=floor)
        student = torch.randn(30, 4, requires_grad=True)
        teacher = torch.randn(30, 7)
        torch.manual_seed(8)
        loss, _ = groups(student, teacher, 0.01, 0.5, "mean")
        loss.backward()
        results.append((loss, student.grad, groups.experts.second_weight.grad,
                        int(groups.experts.routing_stats["active_pairs"])))
    (exact, exact_student, exact_mapping, all_pairs), (floored, floored_student, floored_mapping, kept) = results
    torch.testing.assert_close(floored, exact)
    torch.testing.assert_close(floored_student, exact_student)
    torch.testing.assert_close(floored_mapping, exact_mapping)
    assert all_pairs == 150 and kept < 150


def test_mapped_pairs_keep_the_own_group():
    assignment = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    soft = torch.tensor([[0.4, 0.5999, 1e-4], [0.998, 0.0015, 0.0005]])
    assert mapped_pairs(assignment, soft, 1e-3).tolist() == [[True, True, False], [True, True, False]]
    assert mapped_pairs(assignment, soft, 0.0).all()


# ----- the model -----

@pytest.fixture(scope="module")
def ml100k(tmp_path_factory):
    from conftest import FAST

    config = Config("HTD", "ml-100k", config_dict=dict(FAST, checkpoint_dir=str(tmp_path_factory.mktemp("s"))))
    init_seed(config["seed"], config["reproducibility"])
    return data_preparation(config, create_dataset(config))[0]


@pytest.fixture
def build(workdir, fast_config, teacher_checkpoint, ml100k):
    def make(**overrides):
        config = Config("HTD", "ml-100k", config_dict=fast_config(teacher_checkpoint=teacher_checkpoint,
                                                                  **overrides))
        init_seed(config["seed"], config["reproducibility"])
        model = HTD(config, ml100k.dataset, teacher=load_teacher(config, ml100k.dataset))
        model.run_config = config  # for the tests' own checks
        return model, ml100k

    return make


def test_annealing_follows_the_schedule(build):
    model, _ = build(htd_tau_start=2.0, htd_tau_end=0.02, htd_anneal_epochs=4, htd_num_groups=3)
    for epoch, expected in [(0, 2.0), (2, 0.2), (4, 0.02), (9, 0.02)]:
        model.start_epoch(epoch)
        assert model.selection_tau == pytest.approx(expected)
        assert model.selection_tau == pytest.approx(annealed_temperature(epoch, 2.0, 0.02, 4))
    assert HTD.schedule_settings(model.run_config) == {"htd_anneal_epochs": 4}


def test_htd_term_is_the_users_plus_the_items_topology(build):
    model, train_data = build(htd_num_groups=4, htd_alpha=0.3)
    batch = next(iter(train_data))
    users = torch.unique(batch["user_id"])
    items = torch.unique(torch.cat([batch["item_id"], batch["neg_item_id"]]))
    torch.manual_seed(3)
    actual = model.htd_term(batch)
    torch.manual_seed(3)  # the users' assignment is drawn first, then the items'
    expected = 0.0
    for side, ids, table in (("user", users, model.student.user_embedding.weight),
                             ("item", items, model.student.item_embedding.weight)):
        groups = model.groups[side]
        teacher = getattr(model, f"teacher_{side}_repr")[ids]
        assignment, _ = groups.assign(teacher, model.selection_tau)  # the loss: the own groups' mappings
        mapped = groups.experts.dense_reconstruct(table[ids], assignment)
        group, entity_group, within = htd_losses(teacher, mapped, assignment)
        expected = expected + 0.3 * group + 0.7 * (entity_group + within)
    torch.testing.assert_close(actual, expected)
    base, htd = model.calculate_loss(batch)
    htd.backward()
    assert model.student.item_embedding.weight.grad.abs().sum() > 0
    assert model.groups["user"].experts.selection.weight.grad.abs().sum() > 0


def test_diagnostics_count_the_mappings_computed_per_entity(build):
    model, train_data = build(htd_num_groups=4, htd_weight_floor=0.0)
    model.calculate_loss(next(iter(train_data)))
    diagnostics = model.epoch_diagnostics()
    assert diagnostics["mappings_per_entity"] == 4.0  # dense: every group's mapping
    assert model.epoch_diagnostics()["mappings_per_entity"] == 0.0  # counters reset once read


def test_ftd_is_the_flat_relation_loss_on_the_student_itself(build):
    model, train_data = build(htd_flat=True)
    assert model.groups is None and not any(name.startswith("groups") for name, _ in model.named_parameters())
    batch = next(iter(train_data))
    users = torch.unique(batch["user_id"])
    items = torch.unique(torch.cat([batch["item_id"], batch["neg_item_id"]]))
    expected = (ftd_loss(model.teacher_user_repr[users], model.student.user_embedding.weight[users])
                + ftd_loss(model.teacher_item_repr[items], model.student.item_embedding.weight[items]))
    torch.testing.assert_close(model.htd_term(batch), expected)


@pytest.mark.parametrize("student", ["LightGCN", "NeuMF"])
def test_other_students(build, student):
    model, _ = build(student_model=student, htd_num_groups=3)
    config = model.run_config
    init_seed(config["seed"], config["reproducibility"])
    train_data = data_preparation(config, create_dataset(config))[0]  # NeuMF's batches are pointwise
    losses = model.calculate_loss(next(iter(train_data)))
    assert len(losses) == 2 and all(torch.isfinite(loss) for loss in losses)
    losses[1].backward()


def test_htd_trains_and_evaluates_and_exports_the_student_alone(workdir, fast_config, teacher_checkpoint):
    result = run_recbole_derrd("HTD", "ml-100k", config_dict=fast_config(
        epochs=2, teacher_checkpoint=teacher_checkpoint, htd_num_groups=4))
    assert result["test_result"]["hit@10"] > 0.05
    assert result["student_parameters"] == (944 + 1683) * 8
    losses = [result["train_loss"][epoch] for epoch in sorted(result["train_loss"])]
    assert losses[1] < losses[0]
    state = torch.load(result["checkpoint"], weights_only=True)["state_dict"]
    assert any(key.startswith("groups.") for key in state)  # the training-only modules
    exported = torch.load(export_student(result["checkpoint"]), weights_only=True)
    assert exported["model"] == "BPR"
    assert set(exported["state_dict"]) == {"user_embedding.weight", "item_embedding.weight"}
    assert not any(key.startswith("htd_") or key == "lambda_htd" for key in exported["config"])


# ----- keys -----

@pytest.mark.parametrize("overrides, message", [
    ({"htd_num_groups": 0}, "htd_num_groups must be at least 1"),
    ({"htd_num_groups": 2.5}, "htd_num_groups must be an integer"),
    ({"lambda_htd": -1}, "lambda_htd must be at least 0"),
    ({"lambda_htd": "big"}, "lambda_htd must be a number >= 0, or 'auto'"),
    ({"htd_flat": "yes"}, "htd_flat must be True or False"),
    ({"htd_alpha": 1.5}, r"htd_alpha must be in \[0, 1\]"),
    ({"htd_alpha": -0.1}, "htd_alpha must be at least 0"),
    ({"htd_tau_end": 0}, "htd_tau_end must be at least 1e-30"),
    ({"htd_anneal_epochs": 0}, "htd_anneal_epochs must be at least 1"),
    ({"htd_weight_floor": -1e-3}, "htd_weight_floor must be at least 0"),
    ({"htd_weight_floor": 0.25, "htd_num_groups": 4}, r"htd_weight_floor \(0.25\) must be below 1/htd_num_groups"),
    ({"teacher_model": "Pop"}, "HTD distils the teacher's user and item representations"),
    ({"student_model": "SASRec"}, "student_model must be one of"),
])
def test_bad_keys_refused_when_configured(workdir, fast_config, overrides, message):
    with pytest.raises(ConfigValueError, match=message):
        Config("HTD", "ml-100k", config_dict=fast_config(**overrides))
    assert not (workdir / "saved").exists()
