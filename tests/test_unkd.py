"""Issue 14 (B): UnKD (Chen et al., WSDM 2023), the teacher's ranking distilled as BPR pairs
within item groups of equal total popularity: its loss, its vectorised and seeded sampler, its
checks, and a tiny run."""

import math
from collections import Counter

import pytest
import torch

from recbole.utils import init_seed

from recbole_derrd import Config, UnKD, run_recbole_derrd
from recbole_derrd.data.dataset import create_dataset, data_preparation
from recbole_derrd.errors import UserError
from recbole_derrd.model.unkd import GroupNegativeSampler, teacher_group_topn, unkd_loss
from recbole_derrd.data.popularity import item_popularity_groups, popularity_groups
from recbole_derrd.settings.validation import ConfigValueError
from recbole_derrd.teacher.loading import load_teacher


def test_unkd_loss_against_brute_force():
    generator = torch.Generator().manual_seed(0)
    positive, negative = torch.randn(5, 8, generator=generator), torch.randn(5, 8, generator=generator)
    expected = [-sum(math.log(1 / (1 + math.exp(-(p - n)))) for p, n in zip(row_p, row_n))
                for row_p, row_n in zip(positive.tolist(), negative.tolist())]
    torch.testing.assert_close(unkd_loss(positive, negative), torch.tensor(expected))


@pytest.fixture
def synthetic():
    """7 users (0: padding), 41 items (0: padding) in 3 groups, random training items and
    teacher scores (no ties)."""
    generator = torch.Generator().manual_seed(3)
    n_users, n_items, n_groups = 7, 41, 3
    counts = torch.randint(1, 30, (n_items - 1,), generator=generator)
    item_groups = torch.cat([torch.tensor([-1]), popularity_groups(counts, n_groups)])
    train = [[]] + [sorted(set(torch.randint(1, n_items, (8,), generator=generator).tolist()))
                    for _ in range(n_users - 1)]
    indptr = torch.tensor([0] + [len(items) for items in train]).cumsum(0)
    items = torch.tensor([item for row in train for item in row], dtype=torch.long)
    scores = torch.randn(n_users, n_items, generator=generator)
    return dict(n_users=n_users, n_items=n_items, n_groups=n_groups, item_groups=item_groups,
                train=train, indptr=indptr, items=items, scores=scores)


def test_teacher_group_topn_against_brute_force(synthetic):
    s = synthetic
    topn = teacher_group_topn(lambda users: s["scores"][users], s["n_users"], s["indptr"], s["items"],
                              s["item_groups"], s["n_groups"], 3, chunk_users=2, device="cpu")
    assert topn.shape == (s["n_users"], s["n_groups"], 3)
    for user in range(s["n_users"]):
        for group in range(s["n_groups"]):
            candidates = [item for item in range(1, s["n_items"])
                          if s["item_groups"][item] == group and item not in s["train"][user]]
            candidates.sort(key=lambda item: -float(s["scores"][user, item]))
            assert topn[user, group].tolist() == candidates[:3]


def test_group_negative_sampler_is_uniform_over_the_rest_of_each_group(synthetic):
    s = synthetic
    topn = teacher_group_topn(lambda users: s["scores"][users], s["n_users"], s["indptr"], s["items"],
                              s["item_groups"], s["n_groups"], 3, chunk_users=4, device="cpu")
    sampler = GroupNegativeSampler(s["indptr"], s["items"], s["item_groups"], topn)
    samples = sampler.sample(3000, torch.Generator().manual_seed(0))
    assert samples.shape == (s["n_users"], s["n_groups"], 3000)
    for user in range(s["n_users"]):
        for group in range(s["n_groups"]):
            free = {item for item in range(1, s["n_items"]) if s["item_groups"][item] == group
                    and item not in s["train"][user] and item not in topn[user, group].tolist()}
            drawn = Counter(samples[user, group].tolist())
            assert set(drawn) == free  # every free item, and nothing else
            expected = 3000 / len(free)
            assert all(abs(count - expected) < 5 * math.sqrt(expected) for count in drawn.values())
    again = sampler.sample(3000, torch.Generator().manual_seed(0))
    assert torch.equal(samples, again)


@pytest.fixture
def build(workdir, fast_config, teacher_checkpoint):
    def make(**overrides):
        config = Config("UnKD", "ml-100k",
                        config_dict=fast_config(teacher_checkpoint=teacher_checkpoint, **overrides))
        init_seed(config["seed"], config["reproducibility"])
        train_data = data_preparation(config, create_dataset(config))[0]
        return UnKD(config, train_data.dataset, teacher=load_teacher(config, train_data.dataset)), train_data

    return make


def test_pairs_stay_in_one_group_and_follow_the_teacher(build):
    model, _ = build(unkd_num_groups=3, unkd_topn=6, unkd_num_pairs=4)
    model.start_epoch(0)
    positives = model.positive_items.view(model.n_users, 3, 4)
    negatives = model.negative_items.view(model.n_users, 3, 4)
    groups = torch.arange(3).view(1, 3, 1)
    real = slice(1, None)  # user 0 is padding
    assert (model.item_groups[positives] == groups)[real].all()
    assert (model.item_groups[negatives] == groups)[real].all()
    # positives from the group's teacher top-6, negatives outside it and outside training
    in_topn = (positives.unsqueeze(3) == model.group_topn.unsqueeze(2)).any(3)
    neg_in_topn = (negatives.unsqueeze(3) == model.group_topn.unsqueeze(2)).any(3)
    assert in_topn.all() and not neg_in_topn.any()
    indptr, items = model.training_interactions
    for user in range(1, model.n_users, 97):
        training = set(items[indptr[user]:indptr[user + 1]].tolist())
        assert not training & set(positives[user].reshape(-1).tolist() + negatives[user].reshape(-1).tolist())
    # the teacher ranks every positive above its negative
    teacher = model.teacher.model
    users = torch.arange(model.n_users)
    with torch.no_grad():
        def teacher_scores(item_ids):
            return (teacher.user_embedding.weight[users].view(-1, 1, 1, teacher.user_embedding.weight.shape[1])
                    * teacher.item_embedding.weight[item_ids]).sum(-1)
        assert (teacher_scores(positives) >= teacher_scores(negatives))[real].all()
        # and the group top-N is the teacher's order within the group
        top = teacher_scores(model.group_topn)[real]
        assert (top[..., :-1] >= top[..., 1:]).all()


def test_sampler_is_seeded_per_epoch(build):
    model, _ = build(unkd_topn=5, unkd_num_pairs=3)
    other, _ = build(unkd_topn=5, unkd_num_pairs=3)
    model.start_epoch(0)
    other.start_epoch(0)
    assert torch.equal(model.positive_items, other.positive_items)
    assert torch.equal(model.negative_items, other.negative_items)
    first = model.negative_items.clone()
    model.start_epoch(1)
    assert not torch.equal(model.negative_items, first)
    assert model.positive_items.shape == (model.n_users, 4 * 3)


def test_unkd_term_against_brute_force_pairs(build):
    model, train_data = build(unkd_num_groups=2, unkd_topn=5, unkd_num_pairs=3)
    model.start_epoch(0)
    batch = next(iter(train_data))
    users = torch.unique(batch["user_id"])
    users_table = model.student.user_embedding.weight
    items_table = model.student.item_embedding.weight
    total = 0.0
    for user in users.tolist():
        per_user = 0.0
        for positive, negative in zip(model.positive_items[user].tolist(), model.negative_items[user].tolist()):
            difference = float(users_table[user] @ (items_table[positive] - items_table[negative]))
            per_user -= math.log(1 / (1 + math.exp(-difference)))
        total += per_user
    assert model.unkd_term(users).item() == pytest.approx(total / len(users), rel=1e-5)
    base, unkd = model.calculate_loss(batch)
    assert unkd.item() == pytest.approx(0.1 * total / len(users), rel=1e-5)
    unkd.backward()
    assert model.student.item_embedding.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("student", ["LightGCN", "NeuMF"])
def test_other_students(build, student):
    model, train_data = build(student_model=student, unkd_topn=5, unkd_num_pairs=2)
    losses = model.calculate_loss(next(iter(train_data)))
    assert len(losses) == 2 and all(torch.isfinite(loss) for loss in losses)
    losses[1].backward()


def test_unkd_trains_and_evaluates(workdir, fast_config, teacher_checkpoint):
    result = run_recbole_derrd("UnKD", "ml-100k", config_dict=fast_config(
        epochs=2, teacher_checkpoint=teacher_checkpoint, unkd_topn=5, popularity_groups=2))
    assert result["test_result"]["hit@10"] > 0.05
    assert result["student_parameters"] == (944 + 1683) * 8
    losses = [result["train_loss"][epoch] for epoch in sorted(result["train_loss"])]
    assert losses[1] < losses[0]
    report = result["test_popularity_result"]
    assert report["groups"] == 2 and sum(report["items"]) == 1682
    assert all(0 <= value <= 1 for value in report["recall@10"])


@pytest.mark.parametrize("overrides, message", [
    ({"unkd_num_groups": 0}, "unkd_num_groups must be at least 1"),
    ({"unkd_topn": 0}, "unkd_topn must be at least 1"),
    ({"unkd_num_pairs": 2.5}, "unkd_num_pairs must be an integer"),
    ({"lambda_unkd": -1}, "lambda_unkd must be at least 0"),
    ({"student_model": "SASRec"}, "student_model must be one of"),
])
def test_bad_keys_refused_when_configured(workdir, fast_config, overrides, message):
    with pytest.raises(ConfigValueError, match=message):
        Config("UnKD", "ml-100k", config_dict=fast_config(**overrides))


@pytest.fixture(scope="module")
def ml100k_train(tmp_path_factory):
    from conftest import FAST

    config = Config("UnKD", "ml-100k", config_dict=dict(FAST, checkpoint_dir=str(tmp_path_factory.mktemp("s"))))
    init_seed(config["seed"], config["reproducibility"])
    return config, data_preparation(config, create_dataset(config))[0].dataset


@pytest.mark.parametrize("groups, topn, message", [
    (2000, 10, r"unkd_num_groups=2000 exceeds the 1682 items"),
    (400, 1, r"unkd_num_groups=400 leaves popularity group\(s\) .* empty"),
    (4, 30, r"unkd_topn=30 leaves \d+ user\(s\) without a negative .* in group 3 .*set unkd_topn <= 17"),
])
def test_impossible_groups_refused_before_training(ml100k_train, groups, topn, message):
    config, dataset = ml100k_train
    config["unkd_num_groups"], config["unkd_topn"] = groups, topn
    with pytest.raises(UserError, match=message):
        UnKD.data_requirements(config, dataset)
    config["unkd_num_groups"], config["unkd_topn"] = 4, 17  # the largest that fits
    UnKD.data_requirements(config, dataset)
    assert item_popularity_groups(dataset, 4)[0][0] == -1


def test_auto_weight_search_computes_the_group_topn_once(workdir, fast_config, teacher_checkpoint, monkeypatch):
    import recbole_derrd.model.unkd as unkd_module

    calls = []
    original = unkd_module.teacher_group_topn
    monkeypatch.setattr(unkd_module, "teacher_group_topn", lambda *a, **k: calls.append(1) or original(*a, **k))
    result = run_recbole_derrd("UnKD", "ml-100k", saved=False, config_dict=fast_config(
        epochs=1, teacher_checkpoint=teacher_checkpoint, unkd_topn=7, unkd_num_groups=3,
        lambda_unkd="auto", weight_search_values={"lambda_unkd": [0, 0.1]}))
    search = result["weight_search"]
    assert search["trial_count"] == 2 and search["chosen"]["lambda_unkd"] in (0, 0.1)
    # the trials and the run share one computation (this test's own topn and groups: no cache
    # beside the session's teacher holds them yet)
    assert len(calls) == 1
