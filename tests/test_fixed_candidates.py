"""Fixed candidates for sampled evaluation (``fixed_eval_candidates``): each user's negatives are
drawn once per split, from the configuration's seed, identical at every evaluation, for every
model and however the evaluation is batched; none is an item of the user; uniform (or
RecBole's popularity) over the user's other items; with the key off, RecBole redraws them."""

import logging
import os

import numpy as np
import pytest
import torch
from recbole.sampler import Sampler
from recbole.utils import init_seed

from recbole_derrd import Config, run_recbole_derrd
from recbole_derrd.data.dataset import create_dataset, data_preparation
from recbole_derrd.data.eval_candidates import (
    EvalCandidatesError,
    FixedCandidateSampler,
    draw_candidates,
    item_weights,
    positive_keys,
)
from recbole_derrd.quick_start import evaluate_model, load_data_and_model
from recbole_derrd.utils import get_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER = os.path.join(REPO, "properties", "experiments", "protocol_paper.yaml")
FAST = {"gpu_id": "", "state": "ERROR", "show_progress": False, "embedding_size": 8}


def prepare(model="BPR", **overrides):
    """Config and dataloaders of ml-100k under the paper's protocol (leave-one-out, uni499,
    fixed candidates unless overridden)."""
    config = Config(model, "ml-100k", [PAPER], dict(FAST, **overrides), parse_command_line=False)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    return config, data_preparation(config, dataset)


@pytest.fixture(scope="module")
def prepared():
    return prepare()


def evaluated_items(loader):
    """The (user, item) pairs an evaluation over ``loader`` scores, batch by batch."""
    return [(batch[0]["user_id"].clone(), batch[0]["item_id"].clone()) for batch in loader]


def same_batches(first, second):
    return len(first) == len(second) and all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, second)
    )


def untrained_bpr(config, train_data, seed):
    init_seed(seed, True)
    return get_model("BPR")(config, train_data.dataset)


def test_every_evaluation_ranks_the_same_candidates_with_the_same_metrics(prepared, workdir):
    config, (train_data, valid_data, test_data) = prepared
    assert isinstance(valid_data._sampler, FixedCandidateSampler)
    assert isinstance(test_data._sampler, FixedCandidateSampler)
    for loader in (valid_data, test_data):
        assert same_batches(evaluated_items(loader), evaluated_items(loader))
    model = untrained_bpr(config, train_data, seed=1)
    first = evaluate_model(config, model, train_data, valid_data)
    np.random.seed(12345)  # RecBole's own sampler would draw from this global state
    assert evaluate_model(config, model, train_data, valid_data) == first
    # valid and test draw independent candidates
    assert not np.array_equal(valid_data._sampler.user_candidates(1),
                              test_data._sampler.user_candidates(1))


def test_candidates_depend_on_seed_and_split_only_not_on_model_batching_or_global_state(
        prepared, workdir):
    config, (train_data, valid_data, test_data) = prepared
    # another model, another evaluation batch size (40 users per batch instead of all at
    # once), another global random state: a second data preparation, as another run has
    np.random.seed(7)
    torch.manual_seed(7)
    other_config, (other_train, other_valid, other_test) = prepare(
        "NeuMF", eval_batch_size=40 * 500)
    for mine, theirs in ((valid_data, other_valid), (test_data, other_test)):
        assert np.array_equal(mine._sampler.candidates, theirs._sampler.candidates)
        batches = evaluated_items(theirs)
        assert len(batches) > 20  # the evaluation really is split by users
        pairs = [set(zip(torch.cat([users for users, _ in run]).tolist(),
                         torch.cat([items for _, items in run]).tolist()))
                 for run in (evaluated_items(mine), batches)]
        assert pairs[0] == pairs[1]
    # two differently initialised models are scored on the same candidates: the metrics of one
    # model do not depend on the batching
    model = untrained_bpr(config, train_data, seed=2)
    assert (evaluate_model(config, model, train_data, test_data)
            == evaluate_model(other_config, model, other_train, other_test))
    # another seed is another draw
    _, (_, reseeded_valid, _) = prepare(seed=2021)
    assert not np.array_equal(reseeded_valid._sampler.candidates, valid_data._sampler.candidates)


def test_no_candidate_is_a_training_validation_or_test_item_of_its_user(prepared):
    _, loaders = prepared
    n_items = loaders[0].dataset.item_num
    positives = positive_keys([loader.dataset for loader in loaders], n_items)
    for loader in loaders[1:]:
        sampler = loader._sampler
        users = np.repeat(np.arange(len(sampler.rows)), sampler.rows * sampler.num)
        keys = users * n_items + sampler.candidates
        assert len(keys) == len(loader.dataset) * 499  # 1 held-out item per user, 499 each
        assert not np.isin(keys, positives).any()
        assert sampler.candidates.min() >= 1  # never the padding id
    # RecBole's own rule lets a validation negative be a test item of the user: not here
    valid = loaders[1]._sampler
    valid_users = np.repeat(np.arange(len(valid.rows)), valid.rows * valid.num)
    test_keys = positive_keys([loaders[2].dataset], n_items)
    assert not np.isin(valid_users * n_items + valid.candidates, test_keys).any()


def chi_square(candidates, users, weights, positives, n_items):
    """Pearson's statistic of the item counts of ``candidates`` (user ``users[k]`` drew row k)
    against the counts expected from ``weights`` restricted to each user's non-positive items,
    and its degrees of freedom."""
    per_user = np.bincount(users, minlength=users.max() + 1) * candidates.shape[1]
    positive_users, positive_items = positives // n_items, positives % n_items
    excluded = np.bincount(positive_users, weights=weights[positive_items],
                           minlength=len(per_user))
    coefficient = np.where(per_user > 0, per_user / (weights.sum() - excluded), 0.0)
    expected = weights * coefficient.sum() - weights * np.bincount(
        positive_items, weights=coefficient[positive_users], minlength=n_items)
    observed = np.bincount(candidates.reshape(-1), minlength=n_items)
    assert observed.sum() == pytest.approx(expected.sum())
    cells = expected > 0
    assert observed[~cells].sum() == 0  # nothing outside the support
    statistic = ((observed[cells] - expected[cells]) ** 2 / expected[cells]).sum()
    return statistic, cells.sum() - 1


def test_uniform_candidates_pass_a_chi_square_test_that_a_slightly_biased_draw_fails(prepared):
    _, loaders = prepared
    n_items = loaders[0].dataset.item_num
    positives = positive_keys([loader.dataset for loader in loaders], n_items)
    sampler = loaders[2]._sampler
    users = np.repeat(np.arange(len(sampler.rows)), sampler.rows)
    candidates = sampler.candidates.reshape(-1, sampler.num)
    uniform = item_weights([], n_items, "uniform")
    statistic, freedom = chi_square(candidates, users, uniform, positives, n_items)
    bound = freedom + 5 * np.sqrt(2 * freedom)  # chi-square mean + 5 standard deviations
    assert statistic < bound, (statistic, bound)
    # the same draw from weights 10% higher on the lower half of the item ids: 470,557 draws
    # over 1,682 items see that bias clearly
    biased = uniform.copy()
    biased[: n_items // 2] *= 1.1
    biased[0] = 0.0
    biased_candidates = draw_candidates(users, 499, biased, positives, np.random.default_rng(0))
    biased_statistic, _ = chi_square(biased_candidates, users, uniform, positives, n_items)
    assert biased_statistic > bound, (biased_statistic, bound)  # about 13 deviations above
    # and the chi-square test against the biased weights accepts the biased draw
    assert chi_square(biased_candidates, users, biased, positives, n_items)[0] < bound


def test_popularity_candidates_follow_recboles_popularity_distribution():
    _, loaders = prepare(eval_args={"mode": "pop99", "split": {"LS": "valid_and_test"},
                                    "order": "TO", "group_by": "user"})
    datasets = [loader.dataset for loader in loaders]
    n_items = datasets[0].item_num
    positives = positive_keys(datasets, n_items)
    sampler = loaders[1]._sampler
    assert isinstance(sampler, FixedCandidateSampler) and sampler.num == 99
    users = np.repeat(np.arange(len(sampler.rows)), sampler.rows)
    candidates = sampler.candidates.reshape(-1, 99)
    popularity = item_weights(datasets, n_items, "popularity", alpha=1.0)
    statistic, freedom = chi_square(candidates, users, popularity, positives, n_items)
    bound = freedom + 5 * np.sqrt(2 * freedom)
    assert statistic < bound, (statistic, bound)
    uniform = item_weights(datasets, n_items, "uniform")
    assert chi_square(candidates, users, uniform, positives, n_items)[0] > 10 * bound


def test_with_the_key_off_recbole_redraws_the_candidates_at_every_evaluation(workdir):
    config, (train_data, valid_data, test_data) = prepare(fixed_eval_candidates=False)
    assert type(valid_data._sampler) is Sampler and type(test_data._sampler) is Sampler
    assert not same_batches(evaluated_items(valid_data), evaluated_items(valid_data))
    model = untrained_bpr(config, train_data, seed=1)
    assert (evaluate_model(config, model, train_data, test_data)
            != evaluate_model(config, model, train_data, test_data))


def test_a_run_and_a_reload_of_its_checkpoint_report_the_same_test_metrics(workdir):
    result = run_recbole_derrd("BPR", "ml-100k", [PAPER],
                               dict(FAST, epochs=1, checkpoint_dir=str(workdir / "saved")))
    config, model, _, train_data, _, test_data = load_data_and_model(result["checkpoint"])
    assert evaluate_model(config, model, train_data, test_data) == result["test_result"]


def test_the_sampler_answers_in_recboles_layout_for_any_mix_of_users():
    # user 1 has two rows in the split, user 3 one; 3 candidates per row
    candidates = np.array([[10, 11, 12], [13, 14, 15], [30, 31, 32]])
    sampler = FixedCandidateSampler("valid", np.array([1, 1, 3]), 3, candidates)
    # entry j * n + i is the j-th candidate of user_ids[i]; the r-th occurrence of a user
    # gets its r-th row
    assert sampler.sample_by_user_ids([3, 1, 1], None, 3).tolist() == [
        30, 10, 13, 31, 11, 14, 32, 12, 15]
    assert sampler.sample_by_user_ids([1], None, 3).tolist() == [10, 11, 12]
    with pytest.raises(ValueError, match="fewer interactions"):
        sampler.sample_by_user_ids([3, 3], None, 3)
    with pytest.raises(ValueError, match="fewer interactions"):
        sampler.sample_by_user_ids([7], None, 3)
    with pytest.raises(ValueError, match="4 candidates asked for"):
        sampler.sample_by_user_ids([1], None, 4)


@pytest.mark.parametrize("value", ["yes", 1, 0.0, "[True]"])
def test_the_key_must_be_a_boolean(value):
    with pytest.raises(EvalCandidatesError, match="fixed_eval_candidates must be True or False"):
        Config("BPR", "ml-100k", [PAPER], dict(FAST, fixed_eval_candidates=value),
               parse_command_line=False)


def test_the_key_is_refused_with_repeatable_and_has_no_effect_with_full_ranking(caplog):
    with pytest.raises(EvalCandidatesError, match="repeatable"):
        Config("BPR", "ml-100k", [PAPER], dict(FAST, repeatable=True), parse_command_line=False)
    full = {"mode": "full", "split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": "user"}
    with caplog.at_level(logging.WARNING):
        _, (_, valid_data, test_data) = prepare(eval_args=full)
    assert "fixed_eval_candidates: True has no effect" in caplog.text
    assert not isinstance(valid_data._sampler, FixedCandidateSampler)
    assert not isinstance(test_data._sampler, FixedCandidateSampler)


def test_an_on_demand_teacher_scores_the_same_fixed_candidates(workdir):
    """The teacher trained for a student stops early on the student's fixed candidates."""
    from recbole_derrd.teacher.loading import build_teacher_config

    student = Config("DERRD", "ml-100k", [PAPER], dict(FAST))
    assert student["fixed_eval_candidates"] is True
    assert build_teacher_config(student)["fixed_eval_candidates"] is True
    student = Config("DERRD", "ml-100k", [PAPER], dict(FAST, fixed_eval_candidates=False))
    assert build_teacher_config(student)["fixed_eval_candidates"] is False
