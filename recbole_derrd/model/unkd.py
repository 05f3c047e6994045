r"""
UnKD
################################################
Reference:
    Gang Chen, Jiawei Chen, Fuli Feng, Sheng Zhou, Xiangnan He. "Unbiased Knowledge
    Distillation for Recommendation." In WSDM 2023.

A teacher's scores carry its popularity bias: distilled as they are, they teach the student to
rank popular items higher still. UnKD distils the teacher's ranking only *within* groups of
items of similar popularity, so popularity cannot pass through the soft labels:

- items are split into G groups of equal total training popularity
  (:func:`recbole_derrd.data.popularity.popularity_groups`, the grouping of the ``popularity_groups``
  report; ``unkd_num_groups``);
- for every user and group, the teacher's ranking of the group's items (the user's training
  items excluded) is computed once; every epoch, ``P`` = ``unkd_num_pairs`` pairs per user and
  group are drawn: a positive uniformly from the group's top-``n`` (``unkd_topn``), a negative
  uniformly from the rest of the group (training items excluded), so that the teacher ranks
  the positive above the negative and both have the same popularity level;
- the student learns each pair's order with a BPR loss:

.. math::
    \mathcal{L}_{UnKD}(u) = -\sum_{g=1}^{G} \sum_{p=1}^{P} \log \sigma\big(s_{u, i_{gp}} - s_{u, j_{gp}}\big),
    \qquad \mathcal{L} = \mathcal{L}_{base} + \lambda_{UnKD} \, \mathcal{L}_{UnKD}

on the batch's unique users (a per-user sum over pairs, then the run's ``loss_reduction`` over
users, as RD and CD do).
"""

import torch
import torch.nn.functional as F

from recbole_derrd.data.dataset import training_split
from recbole_derrd.model.distiller import Distiller
from recbole_derrd.settings.registry import register_distiller
from recbole_derrd.data.popularity import item_popularity_groups
from recbole_derrd.teacher.ranking import cached_teacher_topn, topn_cache_path
from recbole_derrd.settings.validation import ConfigValueError


def unkd_loss(positive_scores, negative_scores):
    r"""Per-user :math:`-\sum \log\sigma(s_{pos} - s_{neg})` over the user's pairs, ``[B]``."""
    return -F.logsigmoid(positive_scores - negative_scores).sum(dim=-1)


def group_columns(item_groups, n_groups):
    """The item ids of every group, ascending, padded with the padding id 0: ``[G, S_max]``,
    and the group sizes ``[G]``."""
    real = torch.nonzero(item_groups >= 0).squeeze(1)
    groups = item_groups[real]
    order = torch.argsort(groups * item_groups.numel() + real)  # by group, then by id
    items, groups = real[order], groups[order]
    sizes = torch.bincount(groups, minlength=n_groups)
    starts = torch.cumsum(sizes, 0) - sizes
    columns = torch.zeros((n_groups, int(sizes.max())), dtype=torch.long)
    columns[groups, torch.arange(len(items)) - starts[groups]] = items
    return columns, sizes


@torch.no_grad()
def teacher_group_topn(score_users, n_users, train_indptr, train_items, item_groups, n_groups, topn,
                       chunk_users, device):
    r"""Every user's top-``topn`` items of every popularity group by the teacher's score,
    training items excluded: ``[n_users, G, topn]`` item ids, best first, on the CPU.

    Args:
        score_users (callable): user ids ``[b]`` -> scores ``[b, n_items]``.
        train_indptr, train_items: the training split, CSR.
        item_groups (torch.LongTensor): group of every item id (-1 for the padding id).
        chunk_users (int): users scored at once.
    """
    columns, _ = group_columns(item_groups, n_groups)
    columns = columns.to(device)
    result = torch.empty((n_users, n_groups, topn), dtype=torch.long)
    for start in range(0, n_users, chunk_users):
        end = min(start + chunk_users, n_users)
        users = torch.arange(start, end, device=device)
        scores = score_users(users).float().reshape(end - start, -1)
        scores[:, 0] = -torch.inf  # the padding id, also the padding of columns
        counts = train_indptr[start + 1 : end + 1] - train_indptr[start:end]
        rows = torch.repeat_interleave(torch.arange(end - start), counts).to(device)
        scores[rows, train_items[train_indptr[start] : train_indptr[end]].to(device)] = -torch.inf
        grouped = scores[:, columns]  # [b, G, S_max]
        best = grouped.topk(topn, dim=2).indices
        result[start:end] = columns.expand(end - start, -1, -1).gather(2, best).cpu()
    return result


class GroupNegativeSampler:
    r"""For every (user, group) row, items drawn uniformly from the group's items outside the
    user's training items and the row's top-N (exact, vectorised, no ``users x items``
    structure; :class:`recbole_derrd.teacher.ranking.UninterestingSampler`'s method, per group).

    Within a group, items have local indices ``0 .. S_g - 1`` (by id). For a row whose excluded
    local indices, sorted, are :math:`e_0 < e_1 < \dots`, :math:`e_j - j` free items lie below
    :math:`e_j`, and the free item of free-rank :math:`r` is at local index
    :math:`r + |\{j : e_j - j \le r\}|`, counted for every row at once by one ``searchsorted``
    over the keys :math:`\text{row} \cdot (S_{max} + 1) + e_j - j`, sorted across rows too.

    Args:
        train_indptr, train_items: training split, CSR (duplicates merged).
        item_groups (torch.LongTensor): group of every item id (-1: padding id).
        group_topn (torch.LongTensor): ``[n_users, G, N]`` items excluded besides training ones.
    """

    def __init__(self, train_indptr, train_items, item_groups, group_topn, device=None):
        n_users, n_groups, topn = group_topn.shape
        item_groups = item_groups.cpu()
        columns, sizes = group_columns(item_groups, n_groups)
        local = torch.full_like(item_groups, -1)
        present = columns > 0
        local[columns[present]] = torch.nonzero(present)[:, 1]
        stride = columns.shape[1] + 1
        train_counts = train_indptr[1:] - train_indptr[:-1]
        train_users = torch.repeat_interleave(torch.arange(n_users), train_counts)
        rows = torch.cat([train_users * n_groups + item_groups[train_items],
                          torch.arange(n_users * n_groups).repeat_interleave(topn)])
        locals_ = torch.cat([local[train_items], local[group_topn.reshape(-1).cpu()]])
        keys = (rows * stride + locals_).sort().values
        excluded = torch.bincount(rows, minlength=n_users * n_groups)
        row_starts = torch.cumsum(excluded, 0) - excluded
        sorted_rows = keys // stride
        gaps = keys - sorted_rows * stride - (torch.arange(keys.numel()) - row_starts[sorted_rows])
        self.gap_keys = (sorted_rows * stride + gaps).to(device)
        self.row_starts = row_starts.to(device)
        row_groups = torch.arange(n_groups).repeat(n_users)
        self.available = (sizes[row_groups] - excluded).to(device)
        self.row_offsets = (row_groups * columns.shape[1]).to(device)  # into columns, flattened
        self.flat_columns = columns.reshape(-1).to(device)
        self.stride, self.n_users, self.n_groups = stride, n_users, n_groups

    def sample(self, num_samples, generator):
        """``[n_users, G, num_samples]`` item ids."""
        device = self.gap_keys.device
        n_rows = self.n_users * self.n_groups
        uniform = torch.rand((n_rows, num_samples), generator=generator, device=generator.device).to(device)
        free_rank = (uniform * self.available.unsqueeze(1)).long()
        free_rank = torch.minimum(free_rank, (self.available - 1).clamp(min=0).unsqueeze(1))
        queries = torch.arange(n_rows, device=device).unsqueeze(1) * self.stride + free_rank
        excluded_below = torch.searchsorted(self.gap_keys, queries, right=True) - self.row_starts.unsqueeze(1)
        items = self.flat_columns[self.row_offsets.unsqueeze(1) + free_rank + excluded_below]
        return items.view(self.n_users, self.n_groups, num_samples)


def training_items_per_group(train_indptr, train_items, item_groups, n_groups):
    """``[n_users, G]``: each user's training items in each group (duplicates merged)."""
    n_users = len(train_indptr) - 1
    users = torch.repeat_interleave(torch.arange(n_users), train_indptr[1:] - train_indptr[:-1])
    rows = users * n_groups + item_groups[train_items]
    return torch.bincount(rows, minlength=n_users * n_groups).view(n_users, n_groups)


@register_distiller
class UnKD(Distiller):
    r"""A student backbone distilled with Unbiased Knowledge Distillation: the teacher's ranking
    within item groups of equal total popularity, as BPR pairs that never cross groups.
    Inference is the plain student."""

    loss_names = ("base", "unkd")
    loss_weight_keys = ("lambda_unkd",)

    @classmethod
    def check_keys(cls, checker):
        super().check_keys(checker)
        checker.integer("unkd_num_groups", minimum=1)
        checker.integer("unkd_topn", minimum=1)
        checker.integer("unkd_num_pairs", minimum=1)

    @classmethod
    def data_requirements(cls, config, dataset, split=None):
        """Every group non-empty, and every (user, group) with ``unkd_topn`` positives and at
        least one negative outside the user's training items."""
        n_groups, topn = config["unkd_num_groups"], config["unkd_topn"]
        n_items = dataset.item_num - 1
        where = f"Invalid configuration for {config['model']} on {config['dataset']}:\n  - "
        if n_groups > n_items:
            raise ConfigValueError(
                where + f"unkd_num_groups={n_groups} exceeds the {n_items} items of the training "
                "split (lower unkd_num_groups)"
            )
        item_groups, _ = item_popularity_groups(dataset, n_groups)
        sizes = torch.bincount(item_groups[1:], minlength=n_groups)
        if (sizes == 0).any():
            empty = ", ".join(str(group) for group in torch.nonzero(sizes == 0).squeeze(1).tolist())
            raise ConfigValueError(
                where + f"unkd_num_groups={n_groups} leaves popularity group(s) {empty} empty "
                f"(an item holds more than 1/{n_groups} of the training interactions, or items "
                "are too few): lower unkd_num_groups"
            )
        indptr, items = training_split(dataset, split).interactions
        available = sizes - training_items_per_group(indptr, items, item_groups, n_groups)[1:]
        if available.numel() and int(available.min()) < topn + 1:
            fewest_by_group = available.min(0).values
            group = int(fewest_by_group.argmin())
            fewest = int(fewest_by_group[group])
            short = int((available < topn + 1).any(1).sum())
            raise ConfigValueError(
                where + f"unkd_topn={topn} leaves {short} user(s) without a negative in some "
                f"popularity group: in group {group} ({int(sizes[group])} items) a user has only "
                f"{fewest} items outside its training interactions, and unkd_topn + 1 are needed "
                f"(set unkd_topn <= {fewest - 1}, lower unkd_num_groups, or filter heavy users "
                "with user_inter_num_interval)"
            )

    def __init__(self, config, dataset, teacher=None, split=None):
        super().__init__(config, dataset, teacher=teacher, split=split)
        self.lambda_unkd = config["lambda_unkd"]
        self.n_groups = config["unkd_num_groups"]
        self.topn = config["unkd_topn"]
        self.num_pairs = config["unkd_num_pairs"]
        item_groups, _ = item_popularity_groups(dataset, self.n_groups)
        self.register_buffer("item_groups", item_groups.to(self.device), persistent=False)
        self.register_buffer("group_topn", self.compute_group_topn(), persistent=False)
        indptr, items = self.training_interactions
        self.negative_sampler = GroupNegativeSampler(indptr, items, item_groups, self.group_topn.cpu(),
                                                     device=self.device)
        empty = torch.zeros((self.n_users, 0), dtype=torch.long, device=self.device)
        self.register_buffer("positive_items", empty, persistent=False)
        self.register_buffer("negative_items", empty.clone(), persistent=False)
        self.sampled_epoch = None

    def compute_group_topn(self):
        """The teacher's top-``unkd_topn`` of every user in every group, training items excluded;
        read from the cache next to the teacher when the teacher file and the split are
        unchanged (as :meth:`~recbole_derrd.model.distiller.Distiller.compute_teacher_topn`)."""
        indptr, items = self.training_interactions
        _, size = group_columns(self.item_groups.cpu(), self.n_groups)
        chunk_users = max(1, self.teacher_score_batch_size // (self.n_groups * int(size.max())))

        def compute():
            return teacher_group_topn(
                self.teacher_backbone.score_users, self.n_users, indptr, items, self.item_groups.cpu(),
                self.n_groups, self.topn, chunk_users, self.device,
            )

        name = f"{self.topn}-unkd{self.n_groups}"
        identity = {
            "teacher_sha256": self.teacher.digest,
            "split_fingerprint": self.split_fingerprint,
            "topn": name,
            "n_users": self.n_users,
            "n_items": self.n_items,
        }
        memo = self.teacher.topn_by_split
        if (name, self.split_fingerprint) not in memo:
            path = topn_cache_path(self.teacher.path, name, self.split_fingerprint, self.teacher.digest)
            memo[name, self.split_fingerprint] = cached_teacher_topn(path, compute, identity,
                                                                     write=self.writes_cache)
        return memo[name, self.split_fingerprint].to(self.device)

    def sample_pairs(self, generator):
        """``(positives, negatives)``, ``[n_users, G, P]`` each: a positive drawn uniformly from
        the group's teacher top-N, a negative uniformly from the rest of the group (training
        items excluded), for every user, group and pair at once."""
        positions = torch.randint(self.topn, (self.n_users, self.n_groups, self.num_pairs),
                                  generator=generator, device=generator.device).to(self.device)
        positives = self.group_topn.gather(2, positions)
        negatives = self.negative_sampler.sample(self.num_pairs, generator)
        return positives, negatives

    def start_epoch(self, epoch):
        """This epoch's within-group pairs of every user, from the (seed, epoch) generator."""
        if self.sampled_epoch == epoch:
            return
        positives, negatives = self.sample_pairs(self.epoch_generator(epoch))
        self.positive_items = positives.reshape(self.n_users, -1)
        self.negative_items = negatives.reshape(self.n_users, -1)
        self.sampled_epoch = epoch

    def shared_state(self):
        return [self.group_topn, self.positive_items, self.negative_items]

    def unkd_term(self, batch_users):
        """The UnKD term of the batch's unique users."""
        if self.sampled_epoch is None:
            self.start_epoch(0)  # used outside the trainer
        pairs = self.positive_items.shape[1]
        items = torch.cat([self.positive_items[batch_users], self.negative_items[batch_users]], 1)
        scores = self.student_backbone.pair_scores(batch_users, items)
        return self.reduce(unkd_loss(scores[:, :pairs], scores[:, pairs:]))

    def calculate_loss(self, interaction):
        batch_users = torch.unique(interaction[self.USER_ID])
        with self.student_backbone.training_step():
            return self.base_loss(interaction), self.weighted_term(self.lambda_unkd, self.unkd_term, batch_users)
