r"""
recbole_derrd.data.popularity
#############################
Item-popularity groups, and Recall@k within each group of the very ranking the evaluator
scores (``popularity_groups``, every model).

**Groups** (:func:`popularity_groups`). Items are sorted by their number of interactions in
the *training* split, least popular first (ties by item id), and cut into ``G`` groups of equal
total popularity: with :math:`c_i` the cumulative count up to and including the i-th item of
that order and :math:`T` the total, the item falls in the group :math:`g` with

.. math::
    g/G < c_i / T \le (g + 1)/G, \qquad g = \lceil G c_i / T \rceil - 1

(exact integer arithmetic), so an item whose count crosses a cut opens the next group, and the
most popular item is always in group ``G - 1``. Group 0 holds the least popular items (items
without training interactions included); a group can be empty when one item holds more than
1/G of all interactions, or when there are fewer items than groups. Ties straddling a cut are
split by item id, deterministically.

**Per-group recall** (:func:`per_group_recall`). For a user and a group, the hits among the
user's test items of that group in the top-k, over the number of the user's test items in
that group; users without test items in a group are skipped for it; each group reports the
mean over its users. With one group it is RecBole's Recall@k.

**Same ranking** (:class:`PopularityGroupRecorder`). RecBole's collector keeps only hit flags
of the top-k (``rec.topk``), not the item ids. The recorder wraps the trainer's
``eval_collector.eval_batch_collect`` for one evaluation and keeps, per batch, the top-k item
ids, computed from the same score tensor with the same ``torch.topk`` call as RecBole's
collector, and the test items. Full ranking and RecBole's sampled protocols (``uniN``,
``popN``, with or without ``fixed_eval_candidates``) both hand the collector a users x items
score tensor (non-candidates at ``-inf``), so both are supported; under a sampled protocol, as
for RecBole's own Recall@k, the top-k is among each user's candidates.
"""

from logging import getLogger

import torch

from recbole.utils import set_color

from recbole_derrd.pipeline.distributed import gather_objects

#: Most popularity groups ``popularity_groups`` may ask for.
MAX_POPULARITY_GROUPS = 100


def popularity_groups(counts, n_groups):
    """The popularity group of every entry of ``counts`` (module docstring).

    Args:
        counts (torch.Tensor): ``[n]`` non-negative interaction counts, one per item.
        n_groups (int): G >= 1.

    Returns:
        torch.LongTensor: ``[n]`` group ids in ``0 .. G-1``, 0 = the least popular.

    Raises:
        ValueError: G < 1, a negative count, or no interactions at all.
    """
    counts = torch.as_tensor(counts, dtype=torch.long).reshape(-1)
    if n_groups < 1:
        raise ValueError(f"popularity groups: need at least 1 group, got {n_groups}")
    if counts.numel() and int(counts.min()) < 0:
        raise ValueError("popularity groups: negative interaction counts")
    total = int(counts.sum())
    if total <= 0:
        raise ValueError("popularity groups: the items have no interactions to split by")
    order = torch.argsort(counts, stable=True)  # ascending, ties by index
    cumulative = torch.cumsum(counts[order], 0)
    # ceil(G c / T) - 1, in integers; items before the first interaction (c = 0) -> group 0
    sorted_groups = ((n_groups * cumulative + total - 1) // total - 1).clamp(min=0, max=n_groups - 1)
    groups = torch.empty_like(sorted_groups)
    groups[order] = sorted_groups
    return groups


def training_item_counts(dataset):
    """Interactions of every item id in ``dataset`` (a training split), ``[item_num]``."""
    items = dataset.inter_feat[dataset.iid_field]
    return torch.bincount(torch.as_tensor(items).long(), minlength=dataset.item_num)


def item_popularity_groups(dataset, n_groups):
    """The popularity group of every item id of the training split ``dataset``.

    Returns:
        tuple: ``(groups, counts)``: ``[item_num]`` group ids (-1 for the padding id 0) and
        interaction counts.
    """
    counts = training_item_counts(dataset)
    groups = torch.full_like(counts, -1)
    groups[1:] = popularity_groups(counts[1:], n_groups)
    return groups, counts


def group_summary(groups, counts, n_groups):
    """Items and share of the training interactions of each group (padding id excluded)."""
    real = groups >= 0
    items = torch.bincount(groups[real], minlength=n_groups)
    interactions = torch.bincount(groups[real], weights=counts[real].double(), minlength=n_groups)
    return items.tolist(), (interactions / interactions.sum()).tolist()


def per_group_recall(topk_items, positive_u, positive_i, item_groups, n_groups, ks):
    """Recall@k of every user within every popularity group.

    Args:
        topk_items (torch.LongTensor): ``[U, K]`` each user's ranked items, best first.
        positive_u (torch.LongTensor), positive_i (torch.LongTensor): the test pairs (row of
            ``topk_items``, item id); repeated pairs count once, as in RecBole.
        item_groups (torch.LongTensor): group of every item id (-1: in no group).
        n_groups (int): G.
        ks (list of int): cut-offs, each at most K.

    Returns:
        tuple: ``(recall, positives)``: ``[U, G, len(ks)]`` float64, NaN where the user has
        no test item in the group, and ``[U, G]`` the user's test items in each group.
    """
    n_users = topk_items.shape[0]
    device = topk_items.device
    item_groups = item_groups.to(device)
    positive_u, positive_i = positive_u.long().to(device), positive_i.long().to(device)
    n_items = int(item_groups.numel())
    pairs = torch.unique(positive_u * n_items + positive_i)
    pair_users, pair_items = pairs // n_items, pairs % n_items
    pair_groups = item_groups[pair_items]
    inside = pair_groups >= 0
    positive_keys = (pair_users * n_groups + pair_groups)[inside]
    positives = torch.bincount(positive_keys, minlength=n_users * n_groups).view(n_users, n_groups)
    rows = torch.arange(n_users, device=device).unsqueeze(1)
    hit = torch.isin(rows * n_items + topk_items, pairs)  # [U, K]
    ranked_groups = item_groups[topk_items]
    hit_users, hit_ranks = torch.nonzero(hit & (ranked_groups >= 0), as_tuple=True)
    hit_keys = hit_users * n_groups + ranked_groups[hit_users, hit_ranks]
    hits = torch.stack([torch.bincount(hit_keys[hit_ranks < k], minlength=n_users * n_groups) for k in ks], 1)
    hits = hits.view(n_users, n_groups, len(ks)).double()  # hits within the top-k, by group
    denominator = positives.unsqueeze(2).double()
    recall = torch.where(denominator > 0, hits / denominator.clamp(min=1), torch.nan)
    return recall.cpu(), positives.cpu()


class PopularityGroupRecorder:
    """Per-group Recall@k of the evaluation a trainer runs inside the ``with`` block, for
    ``config['popularity_groups']`` groups of the training split's items (a no-op when 0)::

        with PopularityGroupRecorder(trainer, train_data) as popularity:
            test_result = trainer.evaluate(test_data)
        popularity.report()  # None when popularity_groups is 0

    Args:
        trainer: the run's trainer (its ``config``, ``eval_collector``).
        train_data: the training dataloader (its dataset gives the popularity).
        n_groups (int): G; None: ``config['popularity_groups']``.
    """

    def __init__(self, trainer, train_data, n_groups=None):
        self.trainer = trainer
        self.config = trainer.config
        self.n_groups = (self.config["popularity_groups"] if n_groups is None else n_groups) or 0
        self.ks = sorted(set(self.config["topk"]))
        if self.n_groups:
            self.item_groups, self.counts = item_popularity_groups(train_data.dataset, self.n_groups)
        self.batches = []

    def __enter__(self):
        if not self.n_groups:
            return self
        collector = self.trainer.eval_collector
        collect = collector.eval_batch_collect
        depth = max(self.ks)

        def eval_batch_collect(scores_tensor, interaction, positive_u, positive_i):
            # the collector's own call on the same tensor: the same top-k it scores
            _, topk_idx = torch.topk(scores_tensor, depth, dim=-1)
            self.batches.append((topk_idx.cpu(), positive_u.cpu(), positive_i.cpu()))
            return collect(scores_tensor, interaction, positive_u, positive_i)

        collector.eval_batch_collect = eval_batch_collect
        return self

    def __exit__(self, *exc_info):
        if self.n_groups:
            del self.trainer.eval_collector.eval_batch_collect  # the class's method again
        return False

    def report(self, log=True):
        """``{'groups', 'items', 'interaction_share', 'users', 'recall@k': [one per group]}``
        of the last evaluation (None when off), logged as a table when ``log``."""
        if not self.n_groups:
            return None
        offset, topk, users, items = 0, [], [], []
        for topk_idx, positive_u, positive_i in self.batches:
            topk.append(topk_idx)
            users.append(positive_u.long() + offset)
            items.append(positive_i.long())
            offset += topk_idx.shape[0]
        depth = max(self.ks)
        recall, positives = per_group_recall(
            torch.cat(topk) if topk else torch.zeros((0, depth), dtype=torch.long),
            torch.cat(users) if users else torch.zeros(0, dtype=torch.long),
            torch.cat(items) if items else torch.zeros(0, dtype=torch.long),
            self.item_groups, self.n_groups, self.ks,
        )
        # sums and user counts of every process (one in a single-process run)
        parts = gather_objects((torch.nansum(recall, 0), (positives > 0).sum(0)), self.config)
        sums = sum(part[0] for part in parts)
        counted = sum(part[1] for part in parts)
        means = sums / counted.unsqueeze(1).clamp(min=1).double()
        means[counted == 0] = torch.nan
        group_items, shares = group_summary(self.item_groups, self.counts, self.n_groups)
        result = {
            "groups": self.n_groups,
            "items": group_items,
            "interaction_share": shares,
            "users": counted.tolist(),
        }
        for column, k in enumerate(self.ks):
            result[f"recall@{k}"] = means[:, column].tolist()
        if log:
            getLogger().info(
                set_color("test recall by item popularity", "yellow")
                + " (training-set popularity, groups of equal total interactions; 0 = least "
                "popular):\n" + popularity_table(result, self.ks)
            )
        return result


def popularity_table(result, ks):
    """The per-group report as a plain-text table."""
    columns = ["group", "items", "train interactions", "test users"] + [f"recall@{k}" for k in ks]
    rows = []
    for group in range(result["groups"]):
        cells = [str(group), str(result["items"][group]), f"{result['interaction_share'][group]:.1%}",
                 str(result["users"][group])]
        for k in ks:
            value = result[f"recall@{k}"][group]
            cells.append("-" if value != value else f"{value:.4f}")
        rows.append(cells)
    table = [columns] + rows
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in table]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
