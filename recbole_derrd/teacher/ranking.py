r"""
recbole_derrd.teacher.ranking
#############################
The teacher's ranking and RRD's per-epoch sampling (Section 3.2 of Kang et al., CIKM 2020).

- :func:`teacher_topn`: for every user, the teacher's top-N items excluding the user's training
  items and the padding id, computed in chunks of users (memory: one chunk's scores plus the
  ``users x N`` result).
- :func:`sample_interesting`: ``K`` of the top-N positions per user, without replacement, with
  probability proportional to :math:`\exp(-rank/T)` (Gumbel top-k), returned sorted by rank.
- :class:`UninterestingSampler`: ``L`` items per user drawn uniformly (with replacement) from the
  items that are neither training items nor in the user's top-N. Exact and vectorised: no
  ``users x items`` structure and no rejection loop (see :meth:`UninterestingSampler.sample`).
- :func:`cached_teacher_topn`: the top-N is stored on disk next to the teacher, under a name
  that holds the teacher file's hash and the training split's fingerprint, so it is reused
  while both are unchanged and recomputed (under another name) when either changes.
"""

import os
from logging import getLogger

import torch
from tqdm import tqdm

from recbole.utils import set_color

from recbole_derrd.files.checkpoint import CHECKPOINT_FORMAT, save_checkpoint


@torch.no_grad()
def teacher_topn(
    score_users,
    n_users,
    n_items,
    train_indptr,
    train_items,
    topn,
    chunk_users,
    device,
    show_progress=False,
):
    r"""The teacher's top-``topn`` items of every user id, excluding training items and item 0.

    Args:
        score_users (callable): user ids ``[b]`` on ``device`` -> scores ``[b, n_items]``.
        n_users (int), n_items (int): id counts (padding id 0 included).
        train_indptr (torch.LongTensor), train_items (torch.LongTensor): training split, CSR.
        topn (int): N.
        chunk_users (int): users scored at once.
        device (torch.device): where the scoring runs.
        show_progress (bool): tqdm progress bar.

    Returns:
        torch.LongTensor: ``[n_users, topn]`` item ids, best first, on the CPU.
    """
    result = torch.empty((n_users, topn), dtype=torch.long)
    starts = range(0, n_users, chunk_users)
    if show_progress:
        starts = tqdm(starts, ncols=100, desc=set_color("Teacher top-N", "pink"))
    for start in starts:
        end = min(start + chunk_users, n_users)
        users = torch.arange(start, end, device=device)
        scores = score_users(users).float().reshape(end - start, n_items)
        scores[:, 0] = -torch.inf
        counts = train_indptr[start + 1 : end + 1] - train_indptr[start:end]
        rows = torch.repeat_interleave(torch.arange(end - start), counts).to(device)
        columns = train_items[train_indptr[start] : train_indptr[end]].to(device)
        scores[rows, columns] = -torch.inf
        result[start:end] = scores.topk(topn, dim=1).indices.cpu()
    return result


def topn_cache_path(teacher_path, topn, split_fingerprint, teacher_digest):
    """Where the top-``topn`` of this teacher file on this training split is cached."""
    stem = os.path.splitext(teacher_path)[0]
    return f"{stem}.top{topn}-{split_fingerprint}-{teacher_digest[:12]}.pth"


def cached_teacher_topn(cache_path, compute, identity, write=True):
    """The top-N stored at ``cache_path`` if its ``identity`` (teacher digest, split
    fingerprint, N, id counts) matches, else ``compute()``, stored there when ``write``.

    A cache that cannot be read or written is only a lost speed-up: it is logged, not raised.
    """
    logger = getLogger()
    if os.path.isfile(cache_path):
        try:
            cached = torch.load(cache_path, map_location="cpu", weights_only=True)
            if all(cached.get(key) == value for key, value in identity.items()):
                logger.info(set_color("Reusing the teacher's cached top-N", "green") + f": {cache_path}")
                return cached["items"]
            logger.warning(f"Ignoring {cache_path}: it belongs to another teacher or split")
        except Exception as error:  # corrupt or truncated file
            logger.warning(f"Ignoring unreadable top-N cache {cache_path}: {error}")
    items = compute()
    if write:
        try:
            save_checkpoint(dict(identity, format=CHECKPOINT_FORMAT, items=items), cache_path)
        except OSError as error:
            logger.warning(f"Could not cache the teacher's top-N at {cache_path}: {error}")
    return items


def rank_log_weights(topn, temperature, device=None, dtype=torch.float):
    r"""Log sampling weights :math:`-r/T` of ranks :math:`r = 1..N` (never underflow)."""
    return -torch.arange(1, topn + 1, dtype=dtype, device=device) / temperature


def rank_discount_weights(topn, temperature, device=None):
    r"""Unnormalised sampling weights :math:`\exp(-r/T)` of ranks :math:`r = 1..N`."""
    return torch.exp(rank_log_weights(topn, temperature, device, dtype=torch.float64)).float()


def sample_interesting(n_users, topn, num_interesting, temperature, generator, chunk_users=65536):
    r"""Positions (0-based teacher ranks) of the interesting items of every user.

    ``num_interesting`` distinct positions per user, drawn without replacement with weights
    :math:`\exp(-rank/T)` (successive sampling), sorted ascending (best teacher rank first).
    Drawn as the top-K of the log-weights plus Gumbel noise (the Gumbel-top-k trick, the same
    law as ``torch.multinomial`` without replacement): in float32 the weights themselves
    underflow to 0 beyond rank ~100 T, and ``torch.multinomial`` then returns zero-weight ranks,
    the same ones for every user.

    Returns:
        torch.LongTensor: ``[n_users, num_interesting]``, on the generator's device.
    """
    device = generator.device
    log_weights = rank_log_weights(topn, temperature, device)
    positions = torch.empty((n_users, num_interesting), dtype=torch.long, device=device)
    for start in range(0, n_users, chunk_users):
        end = min(start + chunk_users, n_users)
        noise = torch.empty((end - start, topn), device=device).exponential_(generator=generator)
        keys = log_weights - noise.log()  # log w + Gumbel(0, 1)
        positions[start:end] = keys.topk(num_interesting, dim=1).indices.sort(dim=1).values
    return positions


class UninterestingSampler:
    r"""Uniform sampling from each user's items outside (training items ∪ top-N ∪ {0}).

    For a user whose excluded items, sorted, are :math:`e_0 < e_1 < \dots`, the number of free
    items below :math:`e_j` is :math:`g_j = e_j - 1 - j` (ids start at 1), a non-decreasing
    sequence. The free item of 0-based index :math:`r` is then
    :math:`1 + r + |\{j : g_j \le r\}|`. Drawing :math:`r` uniformly in
    :math:`[0, \text{available}_u)` and counting with one ``searchsorted`` over the keys
    :math:`u \cdot n_{items} + g_j` (sorted across users too) samples every user at once.
    Memory: one int64 per excluded (user, item) pair.

    Args:
        train_indptr, train_items: training split, CSR (:func:`recbole_derrd.data.dataset.train_interactions`).
        topn_items (torch.LongTensor): ``[n_users, N]`` teacher top-N (disjoint from training).
        n_items (int): item id count, padding id 0 included.
    """

    def __init__(self, train_indptr, train_items, topn_items, n_items, device=None):
        n_users, topn = topn_items.shape
        train_counts = train_indptr[1:] - train_indptr[:-1]
        users = torch.cat(
            [
                torch.repeat_interleave(torch.arange(n_users), train_counts),
                torch.arange(n_users).repeat_interleave(topn),
            ]
        )
        keys = users * n_items + torch.cat([train_items, topn_items.reshape(-1).cpu()])
        keys = keys.sort().values
        del users
        excluded_counts = train_counts + topn
        row_starts = torch.cumsum(excluded_counts, 0) - excluded_counts
        sorted_users = keys // n_items
        rank_in_row = torch.arange(keys.numel()) - row_starts[sorted_users]
        free_below = keys - sorted_users * n_items - 1 - rank_in_row
        self.gap_keys = (sorted_users * n_items + free_below).to(device)
        self.row_starts = row_starts.to(device)
        self.available = (n_items - 1 - excluded_counts).to(device)
        self.n_users, self.n_items = n_users, n_items

    def sample(self, num_uninteresting, generator):
        """``[n_users, num_uninteresting]`` item ids, uniform over each user's free items."""
        device = self.gap_keys.device
        uniform = torch.rand(
            (self.n_users, num_uninteresting), generator=generator, device=generator.device
        ).to(device)
        free_index = (uniform * self.available.unsqueeze(1)).long()
        free_index = torch.minimum(free_index, (self.available - 1).clamp(min=0).unsqueeze(1))
        queries = torch.arange(self.n_users, device=device).unsqueeze(1) * self.n_items + free_index
        excluded_below = torch.searchsorted(self.gap_keys, queries, right=True)
        excluded_below -= self.row_starts.unsqueeze(1)
        return free_index + 1 + excluded_below


@torch.no_grad()
def teacher_pair_scores(pair_scores, items, chunk_users=65536):
    """The teacher's scores of ``items`` (``[n_users, S]``, row u belongs to user u), computed
    in chunks of users. ``pair_scores(users, items)`` is the teacher's scoring."""
    scores = torch.empty(items.shape, dtype=torch.float, device=items.device)
    for start in range(0, items.shape[0], chunk_users):
        end = min(start + chunk_users, items.shape[0])
        users = torch.arange(start, end, device=items.device)
        scores[start:end] = pair_scores(users, items[start:end])
    return scores


def sort_by_teacher(pair_scores, items, chunk_users=65536):
    """Each row of ``items`` (``[n_users, L]``, row u belongs to user u) sorted by the
    teacher's score, best first."""
    scores = teacher_pair_scores(pair_scores, items, chunk_users)
    return items.gather(1, scores.argsort(dim=1, descending=True))
