"""Issue 3: any RecBole teacher, three student backbones, and the paper's ablations."""

import pytest
import torch

from recbole.data.interaction import Interaction
from recbole.utils import init_seed

from recbole_derrd import DERRD, Config, run_recbole_derrd
from recbole_derrd.data.dataset import TrainingSplit, create_dataset, data_preparation
from recbole_derrd.model.backbones import RepresentationUndefinedError, backbone_of
from recbole_derrd.model.experts import DistillationExperts
from recbole_derrd.model.rrd import ranking_loss
from recbole_derrd.pipeline.training import prepare_distiller_teacher
from recbole_derrd.quick_start import evaluate_model, load_data_and_model
from recbole_derrd.settings.validation import ConfigValueError

from helpers import brute_force_rrd

SMALL_NEUMF = {"mf_embedding_size": 8, "mlp_embedding_size": 8, "mlp_hidden_size": [8, 4]}


@pytest.mark.parametrize(
    "student, teacher, extra",
    [
        ("BPR", "BPR", {}),
        ("BPR", "LightGCN", {}),
        ("LightGCN", "LightGCN", {}),
        ("LightGCN", "BPR", {}),
        ("NeuMF", "NeuMF", SMALL_NEUMF),  # de_layer joint: NeuMF's default, the paper's choice
        ("NeuMF", "BPR", dict(SMALL_NEUMF, de_layer="embeddings")),
    ],
)
def test_each_backbone_distils_from_two_teacher_architectures(workdir, fast_config, student, teacher, extra):
    result = run_recbole_derrd(
        "DERRD", "ml-100k",
        config_dict=fast_config(student_model=student, teacher_model=teacher, epochs=2, **extra),
    )
    losses = [result["train_loss"][epoch] for epoch in sorted(result["train_loss"])]
    assert all(torch.isfinite(torch.tensor(loss)) for loss in losses)
    assert losses[1] < losses[0]
    assert result["test_result"]["hit@10"] > 0.05  # a random ranking of 1682 items: ~0.05
    checkpoint = torch.load(result["checkpoint"], weights_only=True)
    assert checkpoint["config"]["student_model"] == student
    config, model, _, train_data, _, test_data = load_data_and_model(result["checkpoint"])
    assert type(model.student).__name__ == student and model.teacher.name == teacher
    assert dict(evaluate_model(config, model, train_data, test_data)) == dict(result["test_result"])


@pytest.fixture
def build(workdir, fast_config):
    def make(**overrides):
        config = Config("DERRD", "ml-100k", config_dict=fast_config(**overrides))
        init_seed(config["seed"], config["reproducibility"])
        train_data = data_preparation(config, create_dataset(config))[0]
        split = TrainingSplit(train_data.dataset)
        teacher = prepare_distiller_teacher(config, split)
        init_seed(config["seed"], config["reproducibility"])
        return DERRD(config, train_data.dataset, teacher=teacher, split=split), train_data

    return make


@pytest.mark.parametrize(
    "student, teacher, extra, banks",
    [
        ("BPR", "BPR", {}, {"user": (8, 32), "item": (8, 32)}),
        ("LightGCN", "BPR", {}, {"user": (8, 32), "item": (8, 32)}),
        ("NeuMF", "BPR", dict(SMALL_NEUMF, de_layer="embeddings"),
         {"user_mf": (8, 32), "item_mf": (8, 32), "user_mlp": (8, 32), "item_mlp": (8, 32)}),
        ("NeuMF", "NeuMF", dict(SMALL_NEUMF, de_layer="embeddings"),
         {"user_mf": (8, 32), "item_mf": (8, 32), "user_mlp": (8, 32), "item_mlp": (8, 32)}),
        ("BPR", "NeuMF", {}, {"user": (8, 64), "item": (8, 64)}),  # [GMF ; MLP] tables
        ("NeuMF", "NeuMF", SMALL_NEUMF, {"pair": (8 + 4, 32 + 16)}),  # joint: GMF ⊙ next to MLP out
        ("NeuMF", "NeuMF", dict(SMALL_NEUMF, de_layer="hidden"), {"pair": (4, 16)}),
    ],
)
def test_de_targets_have_the_right_shape_and_are_frozen(build, student, teacher, extra, banks):
    model, train_data = build(student_model=student, teacher_model=teacher, **extra)
    assert {name: (bank.student_dim, bank.teacher_dim) for name, bank in model.experts.items()} == banks
    for name in banks:
        if name != "pair":
            target = model.de_target(name)
            side = "user" if name.startswith("user") else "item"
            assert target.shape == (model.n_users if side == "user" else model.n_items, banks[name][1])
            assert not target.requires_grad
    teacher_before = {k: v.clone() for k, v in model.teacher.model.state_dict().items()}
    assert not any(p.requires_grad for p in model.teacher.model.parameters())
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    losses = model.calculate_loss(next(iter(train_data)))
    sum(losses).backward()
    optimizer.step()
    for key, value in model.teacher.model.state_dict().items():
        assert torch.equal(value, teacher_before[key]), key
    assert all(bank.first_weight.grad is not None for bank in model.experts.values())


def test_any_recbole_model_scores_for_the_teacher_topn(build):
    """NeuMF has no full_sort_predict: its top-N comes from its pairwise scores, in chunks."""
    model, _ = build(student_model="BPR", teacher_model="NeuMF", use_de=False)
    backbone = backbone_of(model.teacher.model)
    backbone.pair_chunk = 1000  # several chunks per user batch
    users = torch.tensor([1, 2, 3])
    with torch.no_grad():
        scores = backbone.score_users(users)
        expected = model.teacher.model.forward(users.repeat_interleave(model.n_items),
                                               torch.arange(model.n_items).repeat(3))
    torch.testing.assert_close(scores, expected.view(3, -1))


@pytest.mark.parametrize("teacher", ["NGCF", "DMF", "ENMF", "MultiVAE", "SimpleX", "EASE", "ItemKNN"])
def test_rrd_from_any_recbole_general_model(build, teacher):
    """The teacher (trained on demand, 1 epoch) ranks with its own scoring: the top-N equals
    the best non-training items by its full_sort_predict, and RRD trains on them."""
    model, train_data = build(teacher_model=teacher, use_de=False, teacher_config={"epochs": 1})
    assert model.teacher.name == teacher
    users = torch.tensor([1, 100, 500, 942])
    teacher_model = model.teacher.model
    with torch.no_grad():
        scores = teacher_model.full_sort_predict(
            Interaction({"user_id": users.to(teacher_model.device)})).view(len(users), -1).cpu()
    indptr, items = model.training_interactions
    for row, user in enumerate(users.tolist()):
        scores[row, items[indptr[user]:indptr[user + 1]]] = -torch.inf
        scores[row, 0] = -torch.inf
        expected = scores[row].topk(model.teacher_topn.shape[1]).values
        got = scores[row][model.teacher_topn[user].cpu()]
        torch.testing.assert_close(got, expected)  # same scores in the same order (ties aside)
    losses = model.calculate_loss(next(iter(train_data)))
    assert torch.isfinite(losses[1]) and losses[1] > 0


def test_de_with_a_teacher_without_representation_fails_before_training(workdir, fast_config):
    with pytest.raises(ConfigValueError, match="no representation|none is defined"):
        run_recbole_derrd("DERRD", "ml-100k", config_dict=fast_config(teacher_model="DMF"))
    with pytest.raises(RepresentationUndefinedError):
        backbone_of(object.__new__(type("DMF", (), {}))).side_tables()


def test_attention_selection_mixes_all_experts_without_noise():
    torch.manual_seed(0)
    experts = DistillationExperts(3, 6, 5, selection="attention").double()
    teacher_repr = torch.randn(4, 6, dtype=torch.float64)
    weights = experts.selection_weights(teacher_repr, tau=1e-10)  # tau plays no part
    torch.testing.assert_close(weights, torch.softmax(experts.selection(teacher_repr), dim=-1))
    torch.testing.assert_close(experts.selection_weights(teacher_repr, tau=1.0), weights)


@pytest.mark.parametrize("selection, hidden", [("single", 55), ("single_large", 55 * 30)])
def test_single_expert_variants(selection, hidden):
    experts = DistillationExperts(10, 100, 30, selection=selection)
    assert experts.num_experts == 1 and experts.hidden_dim == hidden and experts.selection is None
    torch.testing.assert_close(experts.selection_weights(torch.randn(7, 100), 0.5), torch.ones(7, 1))
    student_repr, teacher_repr = torch.randn(7, 10), torch.randn(7, 100)
    single = torch.relu(student_repr @ experts.first_weight[0] + experts.first_bias[0])
    single = single @ experts.second_weight[0] + experts.second_bias[0]
    torch.testing.assert_close(experts(student_repr, teacher_repr, 1.0),
                               (teacher_repr - single).pow(2).sum(-1))


def brute_force_pl(scores):
    """Plackett-Luce negative log-likelihood of the given order, term by term."""
    return brute_force_rrd(scores, scores[:, :0])


def test_rrd_modes_against_brute_force():
    generator = torch.Generator().manual_seed(3)
    interesting = torch.randn(5, 4, generator=generator, dtype=torch.float64)
    uninteresting = torch.randn(5, 6, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(ranking_loss(interesting, uninteresting, "relaxed"),
                               brute_force_rrd(interesting, uninteresting))
    torch.testing.assert_close(ranking_loss(interesting, uninteresting, "full"),
                               brute_force_pl(torch.cat([interesting, uninteresting], dim=1)))
    torch.testing.assert_close(ranking_loss(interesting, uninteresting, "interesting_only"),
                               brute_force_pl(interesting))
    assert not torch.allclose(ranking_loss(interesting, uninteresting, "relaxed"),
                              ranking_loss(interesting, uninteresting, "interesting_only"))


def test_full_mode_ranks_uninteresting_items_in_the_teacher_order(build):
    model, _ = build(rrd_mode="full", use_de=False)
    model.start_epoch(0)
    users = torch.arange(1, model.n_users)
    with torch.no_grad():
        teacher_scores = model.teacher_backbone.pair_scores(users, model.uninteresting_items[users])
    assert (teacher_scores[:, :-1] >= teacher_scores[:, 1:]).all()


def test_interesting_only_mode_samples_no_uninteresting_items(build):
    model, train_data = build(rrd_mode="interesting_only", use_de=False, rrd_num_uninteresting=0)
    model.start_epoch(0)
    assert model.uninteresting_items.shape[1] == 0 and model.uninteresting_sampler is None
    assert torch.isfinite(model.calculate_loss(next(iter(train_data)))[1])


def test_teacher_topk_in_order_instead_of_sampling(build):
    model, _ = build(rrd_sample_interesting=False, use_de=False)
    for epoch in (0, 1):
        model.start_epoch(epoch)
        assert torch.equal(model.interesting_items, model.teacher_topn[:, : model.num_interesting])
