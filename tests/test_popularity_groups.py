"""Issue 14 (A): item-popularity groups of equal total training popularity, and test Recall@k
within each group, from the very ranking RecBole's evaluator scores (``popularity_groups``)."""

from fractions import Fraction

import numpy as np
import pytest
import torch
from conftest import FAST

from recbole_derrd import Config, run_recbole_derrd
from recbole_derrd.errors import UserError
from recbole_derrd.data.per_user import PerUserRecorder
from recbole_derrd.pipeline.training import prepare_run
from recbole_derrd.data.popularity import (
    PopularityGroupRecorder,
    item_popularity_groups,
    per_group_recall,
    popularity_groups,
)


def brute_force_groups(counts, n_groups):
    """Items by (count, id); an item's group is the g with g/G < cumulative/total <= (g+1)/G
    (group 0 for items before the first interaction)."""
    order = sorted(range(len(counts)), key=lambda item: (counts[item], item))
    total = sum(counts)
    groups, cumulative = [None] * len(counts), 0
    for item in order:
        cumulative += counts[item]
        share = Fraction(cumulative, total)
        group = 0
        while group < n_groups - 1 and share > Fraction(group + 1, n_groups):
            group += 1
        groups[item] = group
    return groups


@pytest.mark.parametrize("counts, n_groups, expected", [
    ([1, 1, 1, 1], 2, [0, 0, 1, 1]),
    ([3, 1, 2, 2], 2, [1, 0, 0, 1]),  # sorted 1, 2, 2, 3: cumulative 1, 3, 5, 8 of 8
    ([2, 2, 4], 2, [0, 0, 1]),  # cumulative exactly 1/2: that item closes group 0
    ([1, 3, 3, 3], 2, [0, 0, 1, 1]),  # tied items straddling the cut split by id
    ([3, 3, 3, 1], 2, [0, 1, 1, 0]),
    ([1, 1, 10], 3, [0, 0, 2]),  # one item above 1/G: group 1 empty
    ([0, 0, 5, 5], 2, [0, 0, 0, 1]),  # items without interactions: the least popular group
    ([4, 7, 1], 1, [0, 0, 0]),
])
def test_groups_at_boundaries_and_ties(counts, n_groups, expected):
    assert popularity_groups(torch.tensor(counts), n_groups).tolist() == expected
    assert brute_force_groups(counts, n_groups) == expected


def test_groups_against_brute_force_and_equal_popularity():
    generator = torch.Generator().manual_seed(0)
    for trial in range(30):
        n = int(torch.randint(1, 60, (1,), generator=generator))
        # heavy ties and zeros: counts from a small range, some long-tailed
        counts = torch.randint(0, 6, (n,), generator=generator)
        if trial % 3 == 0:
            counts = (torch.rand(n, generator=generator) ** 4 * 200).long()
        if int(counts.sum()) == 0:
            counts[0] = 1
        for n_groups in (1, 2, 3, 5, 8):
            groups = popularity_groups(counts, n_groups)
            assert groups.tolist() == brute_force_groups(counts.tolist(), n_groups)
            # sorted by popularity, groups never go down; each group's total misses T/G by at
            # most the largest count (the item that crosses a cut)
            order = sorted(range(n), key=lambda item: (int(counts[item]), item))
            assert [int(groups[item]) for item in order] == sorted(int(groups[item]) for item in order)
            total, largest = int(counts.sum()), int(counts.max())
            for group in range(n_groups):
                mass = int(counts[groups == group].sum())
                assert abs(mass - total / n_groups) <= largest


def test_grouping_refuses_impossible_inputs():
    with pytest.raises(ValueError, match="at least 1 group"):
        popularity_groups(torch.tensor([1, 2]), 0)
    with pytest.raises(ValueError, match="no interactions"):
        popularity_groups(torch.tensor([0, 0]), 2)


def brute_force_recall(topk_items, positives, item_groups, n_groups, ks):
    """{(group, k): mean over users with test items in the group}, loop by loop."""
    result = {}
    for group in range(n_groups):
        for k in ks:
            values = []
            for user, ranked in enumerate(topk_items):
                wanted = {item for item in positives[user] if item_groups[item] == group}
                if not wanted:
                    continue
                values.append(sum(1 for item in ranked[:k] if item in wanted) / len(wanted))
            result[group, k] = sum(values) / len(values) if values else None
    return result


def as_pairs(positives, repeat_first=False):
    users = [user for user, items in enumerate(positives) for _ in items]
    items = [item for items in positives for item in items]
    if repeat_first and users:  # RecBole's positive matrix counts a repeated pair once
        users, items = users + users[:1], items + items[:1]
    return torch.tensor(users, dtype=torch.long), torch.tensor(items, dtype=torch.long)


def means(recall):
    """Per-group mean over users (NaN rows skipped), as the recorder reports it."""
    return np.nanmean(recall.numpy(), axis=0)


def test_per_group_recall_on_a_hand_built_example():
    # items 1..6 (0: padding, in no group); groups: {1, 2, 3} -> 0, {4, 5} -> 1, {6} -> 2
    item_groups = torch.tensor([-1, 0, 0, 0, 1, 1, 2])
    topk_items = torch.tensor([[4, 1, 6, 2], [3, 5, 2, 1], [6, 4, 5, 3]])
    positives = [[1, 2, 5], [4, 5, 6], [6]]
    users, items = as_pairs(positives, repeat_first=True)
    recall, counts = per_group_recall(topk_items, users, items, item_groups, 3, [1, 2, 4])
    assert counts.tolist() == [[2, 1, 0], [0, 2, 1], [0, 0, 1]]
    # user 0, group 0 (items 1, 2): rank 2 hits 1, rank 4 hits 2 -> @1 0, @2 1/2, @4 1
    assert recall[0, 0].tolist() == [0.0, 0.5, 1.0]
    assert recall[1, 1].tolist() == [0.0, 0.5, 0.5]  # user 1, group 1 (4, 5): 5 at rank 2
    assert recall[2, 2].tolist() == [1.0, 1.0, 1.0]
    assert torch.isnan(recall[0, 2]).all() and torch.isnan(recall[2, 0]).all()
    expected = brute_force_recall(topk_items.tolist(), positives, item_groups.tolist(), 3, [1, 2, 4])
    for (group, k), value in expected.items():
        assert means(recall)[group, [1, 2, 4].index(k)] == pytest.approx(value)
    assert expected[0, 2] == 0.5 and expected[1, 4] == 0.25  # user 0 alone; (0 + 1/2) / 2


def test_per_group_recall_against_brute_force_random():
    generator = torch.Generator().manual_seed(1)
    n_items, n_groups, ks = 40, 4, [1, 3, 7]
    item_groups = torch.cat([torch.tensor([-1]), torch.randint(0, n_groups, (n_items - 1,), generator=generator)])
    topk_items = torch.stack([torch.randperm(n_items - 1, generator=generator)[:7] + 1 for _ in range(25)])
    positives = [sorted(set((torch.randint(1, n_items, (int(torch.randint(1, 9, (1,), generator=generator)),),
                                           generator=generator)).tolist())) for _ in range(25)]
    users, items = as_pairs(positives)
    recall, counts = per_group_recall(topk_items, users, items, item_groups, n_groups, ks)
    expected = brute_force_recall(topk_items.tolist(), positives, item_groups.tolist(), n_groups, ks)
    for (group, k), value in expected.items():
        assert means(recall)[group, ks.index(k)] == pytest.approx(value, abs=1e-12)
    # one group: RecBole's Recall@k, hits over all of the user's test items
    one_group = torch.where(item_groups >= 0, 0, -1)
    recall, _ = per_group_recall(topk_items, users, items, one_group, 1, ks)
    for user, ranked in enumerate(topk_items.tolist()):
        for column, k in enumerate(ks):
            hits = len(set(ranked[:k]) & set(positives[user]))
            assert recall[user, 0, column].item() == pytest.approx(hits / len(positives[user]))


@pytest.mark.parametrize("protocol", [
    {},  # full ranking
    {"eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "uni99"}},
])
def test_one_group_is_the_reported_recall(workdir, protocol):
    result = run_recbole_derrd("BPR", "ml-100k", saved=False, config_dict=dict(
        FAST, epochs=1, popularity_groups=1, metrics=["Recall", "NDCG"], topk=[5, 10], valid_metric="recall@10",
        **protocol))
    report = result["test_popularity_result"]
    assert report["groups"] == 1 and report["items"] == [1682]
    assert report["interaction_share"] == [pytest.approx(1.0)]
    assert report["users"] == [len(result["test_per_user"]["recall@10"])]
    for k in (5, 10):
        assert report[f"recall@{k}"][0] == pytest.approx(float(np.mean(result["test_per_user"][f"recall@{k}"])),
                                                      abs=1e-9)
        assert report[f"recall@{k}"][0] == pytest.approx(result["test_result"][f"recall@{k}"], abs=5e-5)


def test_groups_of_a_real_evaluation(workdir):
    """Several groups on one trained model: the recorder's per-group recall is the brute force
    over the ranking the evaluator scores (the top-k the recorder kept, checked against the
    evaluator's hit flags), with the items and shares of the training split."""
    config = Config("BPR", "ml-100k", config_dict=dict(FAST, epochs=1, metrics=["Recall"], topk=[10],
                                                           valid_metric="recall@10"))
    _, train_data, _, test_data, _, trainer = prepare_run(config)
    trainer.fit(train_data, saved=False)
    recorder = PopularityGroupRecorder(trainer, train_data, n_groups=4)
    with recorder, PerUserRecorder(trainer) as per_user:
        trainer.evaluate(test_data, load_best_model=False)
    report = recorder.report(log=False)
    groups, counts = item_popularity_groups(train_data.dataset, 4)
    assert report["items"] == torch.bincount(groups[1:], minlength=4).tolist()
    assert sum(report["items"]) == 1682 and report["items"][0] > report["items"][3]
    assert sum(report["interaction_share"]) == pytest.approx(1.0)
    assert all(abs(share - 0.25) < 0.01 for share in report["interaction_share"])
    topk = torch.cat([batch[0] for batch in recorder.batches])
    positives = []
    for topk_idx, positive_u, positive_i in recorder.batches:
        rows = [[] for _ in range(topk_idx.shape[0])]
        for user, item in zip(positive_u.tolist(), positive_i.tolist()):
            rows[user].append(item)
        positives += rows
    # the kept top-k is the evaluator's: its hits give RecBole's per-user recall
    recbole_recall = [len(set(topk[user].tolist()) & set(items)) / len(set(items))
                      for user, items in enumerate(positives)]
    np.testing.assert_allclose(recbole_recall, per_user.values["recall@10"], atol=1e-12)
    expected = brute_force_recall(topk.tolist(), positives, groups.tolist(), 4, [10])
    for group in range(4):
        assert report["recall@10"][group] == pytest.approx(expected[group, 10], abs=1e-12)
        assert report["users"][group] == sum(
            1 for items in positives if any(int(groups[item]) == group for item in items))


@pytest.mark.parametrize("value", [-1, 1.5, "four", 101])
def test_bad_popularity_groups_refused(workdir, value):
    with pytest.raises(UserError, match="popularity_groups"):
        Config("BPR", "ml-100k", config_dict=dict(FAST, popularity_groups=value))


def test_popularity_groups_need_a_ranking_evaluation(workdir):
    with pytest.raises(UserError, match="popularity_groups=3 .*ranking evaluation"):
        Config("BPR", "ml-100k", config_dict=dict(FAST, popularity_groups=3, metrics=["AUC"],
                                                   eval_args={"mode": "labeled"}))
