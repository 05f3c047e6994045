"""
recbole_derrd.data.eval_candidates
##################################
Fixed negative candidates for sampled evaluation (``eval_args: {mode: uniN | popN}``), turned on
by ``fixed_eval_candidates: True``.

RecBole 1.2.1 draws the N negatives of sampled evaluation anew every time an evaluation
dataloader is iterated (``NegSampleEvalDataLoader.collate_fn`` -> ``Sampler.sample_by_user_ids``
with NumPy's global generator). Validation scores of consecutive epochs are then measured on
different candidate sets, which adds noise to early stopping, and two methods are tested on
different candidates. Here each user's candidates of a split are drawn once, from a generator
seeded by the configuration's ``seed`` and the split alone, so every evaluation of every model
on that split ranks the same items.

The seam is the evaluation dataloader's sampler: :func:`install_fixed_eval_candidates` replaces
it (after RecBole's ``data_preparation``) by a :class:`FixedCandidateSampler` whose
``sample_by_user_ids`` returns the precomputed candidates; RecBole's dataloader, batching and
evaluators stay unchanged.

Differences from RecBole's own draw, on purpose:

- a user's candidates exclude all of that user's training, validation and test items (RecBole
  excludes, for validation, only training and validation items);
- the draw uses its own generator (``numpy.random.default_rng([seed, split])``), so it neither
  depends on nor disturbs the global random state.

As in RecBole, a user with k items in a split gets k x N draws, with replacement (RecBole's
evaluation scatters them into one row per user, so repeated draws count once), uniform over the
user's other items for ``uni``, proportional to ``popularity ** alpha`` (RecBole's popularity over
all splits' interactions and its ``alpha``) for ``pop``.
"""

from logging import getLogger

import numpy as np
import torch

from recbole_derrd.errors import UserError

#: Entropy added to ``seed`` per split: the two splits draw independent candidates.
SPLIT_CODES = {"valid": 1, "test": 2}
#: Draws made at once (bounds the memory of the precomputation).
CHUNK_DRAWS = 1 << 22


class EvalCandidatesError(UserError, ValueError):
    """``fixed_eval_candidates`` cannot be honoured with these settings or this data."""


def sampled_phases(config):
    """The evaluation phases (``valid``, ``test``) whose mode samples negatives (``uniN``,
    ``popN``); full ranking and ``labeled`` sample nothing."""
    phases = []
    for phase in ("valid", "test"):
        args = config[f"{phase}_neg_sample_args"] or {}
        if args.get("distribution") in ("uniform", "popularity") and args.get(
            "sample_num", "none"
        ) != "none":
            phases.append(phase)
    return phases


def check_fixed_eval_candidates(config):
    """Validate ``fixed_eval_candidates`` when the configuration is built.

    Raises:
        EvalCandidatesError: not a boolean, or True together with ``repeatable: True`` and a sampled
            mode (RecBole's repeatable sampler excludes items by another rule).
    """
    value = config["fixed_eval_candidates"]
    if value is None:
        return
    if not isinstance(value, bool):
        raise EvalCandidatesError(f"fixed_eval_candidates must be True or False, got {value!r}")
    if value and config["repeatable"] and sampled_phases(config):
        raise EvalCandidatesError(
            "fixed_eval_candidates: True is not supported with repeatable: True (RecBole's "
            "RepeatableSampler); set one of them to False"
        )


def positive_keys(datasets, n_items):
    """Sorted unique keys ``user * n_items + item`` of every interaction of ``datasets``."""
    keys = [
        dataset.inter_feat[dataset.uid_field].numpy().astype(np.int64) * n_items
        + dataset.inter_feat[dataset.iid_field].numpy().astype(np.int64)
        for dataset in datasets
    ]
    return np.unique(np.concatenate(keys))


def _contains(sorted_keys, keys):
    """``keys`` present in ``sorted_keys`` (a sorted array), elementwise."""
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    index = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[index] == keys


def item_weights(datasets, n_items, distribution, alpha=1.0):
    """Sampling weights of the item ids ``0 .. n_items - 1`` (0, the padding id, never drawn):
    1 for ``uniform``; RecBole's ``count ** alpha`` over the interactions of ``datasets`` for
    ``popularity`` (items without interactions are never drawn, as in RecBole's alias table)."""
    if distribution == "uniform":
        weights = np.ones(n_items, dtype=np.float64)
    elif distribution == "popularity":
        items = np.concatenate(
            [dataset.inter_feat[dataset.iid_field].numpy() for dataset in datasets]
        )
        counts = np.bincount(items, minlength=n_items).astype(np.float64)
        weights = np.power(counts, float(alpha), where=counts > 0, out=np.zeros_like(counts))
    else:
        raise ValueError(f"no fixed candidates for the distribution {distribution!r}")
    weights[0] = 0.0
    return weights


def draw_candidates(users, num, weights, excluded_keys, rng):
    """``num`` draws for every entry of ``users``, each from ``weights`` restricted to the items
    outside that user's ``excluded_keys`` (rejection of excluded draws, in vectorised rounds).

    Returns:
        numpy.ndarray: ``[len(users), num]`` item ids (int32 where they fit).

    Raises:
        EvalCandidatesError: a user with no item left to draw.
    """
    n_items = len(weights)
    dtype = np.int32 if n_items <= np.iinfo(np.int32).max else np.int64
    if len(users) == 0:
        return np.empty((0, num), dtype=dtype)
    uniform = bool(np.all(weights[1:] == weights[1]))
    cumulative = np.cumsum(weights)
    total = cumulative[-1]
    last_drawable = int(np.flatnonzero(weights)[-1])  # a product rounded up to total lands here
    unique_users = np.unique(users)
    # weight left to each user once its own items are excluded
    excluded_users = excluded_keys // n_items
    excluded_weight = np.bincount(
        excluded_users, weights=weights[excluded_keys % n_items], minlength=int(users.max()) + 1
    )
    starved = unique_users[total - excluded_weight[unique_users] <= total * 1e-12]
    if len(starved):
        raise EvalCandidatesError(
            f"user {int(starved[0])} (internal id) has no item left to sample as a negative "
            f"({len(starved)} such users): filter them out (user_inter_num_interval)"
        )

    def draw(size):
        if uniform:
            return rng.integers(1, n_items, size=size)
        items = np.searchsorted(cumulative, rng.random(size) * total, side="right")
        return np.minimum(items, last_drawable)

    result = np.empty((len(users), num), dtype=dtype)
    rows_per_chunk = max(1, CHUNK_DRAWS // max(num, 1))
    for start in range(0, len(users), rows_per_chunk):
        chunk_users = np.repeat(users[start : start + rows_per_chunk], num)
        chunk = np.empty(len(chunk_users), dtype=np.int64)
        pending = np.arange(len(chunk_users))
        while len(pending):
            items = draw(len(pending))
            rejected = _contains(excluded_keys, chunk_users[pending] * n_items + items)
            chunk[pending[~rejected]] = items[~rejected]
            pending = pending[rejected]
        result[start : start + rows_per_chunk] = chunk.reshape(-1, num)
    return result


def _occurrence_rank(keys):
    """For each entry of ``keys``, how many equal keys come before it."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    positions = np.arange(len(keys))
    rank = positions - np.maximum.accumulate(np.where(starts, positions, 0))
    result = np.empty(len(keys), dtype=np.int64)
    result[order] = rank
    return result


class FixedCandidateSampler:
    """Stands in for RecBole's ``Sampler`` in one evaluation dataloader: ``sample_by_user_ids``
    returns precomputed candidates instead of new draws.

    User ``u`` with ``k`` interactions in the split owns ``k`` rows of ``num`` candidates; a call
    gets, for the r-th occurrence of ``u`` in its ``user_ids``, row r. RecBole's
    ``NegSampleEvalDataLoader`` asks for all ``k`` rows of a user at once, whatever the batching.

    Args:
        phase (str): ``valid`` or ``test``.
        split_users (numpy.ndarray): internal user id of every interaction of the split.
        num (int): N, candidates per interaction.
        candidates (numpy.ndarray): ``[len(split_users), num]``, rows grouped by user in
            ascending user order.
        base_sampler: RecBole's sampler this one replaces (other attributes are read from it).
    """

    def __init__(self, phase, split_users, num, candidates, base_sampler=None):
        self.phase = phase
        self.num = num
        self.base_sampler = base_sampler
        user_num = int(split_users.max(initial=-1)) + 1
        self.rows = np.bincount(split_users, minlength=user_num)
        self.offsets = np.concatenate([[0], np.cumsum(self.rows)[:-1]]) * num
        dtype = np.int32 if candidates.max(initial=0) < np.iinfo(np.int32).max else np.int64
        self.candidates = np.ascontiguousarray(candidates, dtype=dtype).reshape(-1)

    @classmethod
    def draw(cls, config, phase, dataset, excluded_keys, weights, base_sampler=None):
        """Draw the candidates of ``dataset`` (one evaluation split) once, seeded by
        ``config['seed']`` and ``phase``."""
        num = int(config[f"{phase}_neg_sample_args"]["sample_num"])
        split_users = np.sort(dataset.inter_feat[dataset.uid_field].numpy().astype(np.int64))
        rng = np.random.default_rng([int(config["seed"]), SPLIT_CODES[phase]])
        candidates = draw_candidates(split_users, num, weights, excluded_keys, rng)
        return cls(phase, split_users, num, candidates, base_sampler)

    def user_candidates(self, user_id):
        """``[k, num]`` candidates of one internal user id (``k`` its rows in the split)."""
        start = self.offsets[user_id]
        return self.candidates[start : start + self.rows[user_id] * self.num].reshape(-1, self.num)

    def sample_by_user_ids(self, user_ids, item_ids, num):
        """The fixed candidates of ``user_ids``, in the layout of RecBole's
        ``Sampler.sample_by_user_ids``: entry ``j * len(user_ids) + i`` is the j-th candidate
        of ``user_ids[i]``."""
        if num != self.num:
            raise ValueError(f"{num} candidates asked for, {self.num} were drawn")
        user_ids = np.asarray(user_ids, dtype=np.int64)
        occurrence = _occurrence_rank(user_ids)
        known = user_ids < len(self.rows)
        if not np.all(known) or np.any(occurrence >= self.rows[user_ids]):
            raise ValueError(
                f"the {self.phase} split has fewer interactions for these users than asked for"
            )
        start = self.offsets[user_ids] + occurrence * num
        index = start[:, None] + np.arange(num)
        return torch.from_numpy(self.candidates[index].T.reshape(-1).astype(np.int64))

    def __getattr__(self, name):
        base = self.__dict__.get("base_sampler")
        if base is None:
            raise AttributeError(name)
        return getattr(base, name)


def install_fixed_eval_candidates(config, train_data, valid_data, test_data):
    """With ``fixed_eval_candidates: True``, give every sampled evaluation dataloader a
    :class:`FixedCandidateSampler` (in place). Without a sampled mode it only logs that the
    key has no effect. Returns the phases given fixed candidates."""
    if not config["fixed_eval_candidates"]:
        return []
    phases = sampled_phases(config)
    if not phases:
        getLogger().warning(
            "fixed_eval_candidates: True has no effect: the evaluation samples no negatives "
            f"(eval_args mode {config['eval_args']['mode']})"
        )
        return []
    loaders = {"valid": valid_data, "test": test_data}
    datasets = [loader._dataset for loader in (train_data, valid_data, test_data)]
    n_items = valid_data._dataset.item_num
    excluded = positive_keys(datasets, n_items)
    for phase in phases:
        loader = loaders[phase]
        base = loader._sampler
        if isinstance(base, FixedCandidateSampler):  # installed before (cached dataloaders)
            base = base.base_sampler
        args = config[f"{phase}_neg_sample_args"]
        alpha = getattr(base, "alpha", 1.0)
        weights = item_weights(
            datasets, n_items, args["distribution"],
            alpha if isinstance(alpha, (int, float)) else 1.0,
        )
        loader._sampler = FixedCandidateSampler.draw(
            config, phase, loader._dataset, excluded, weights, base_sampler=base
        )
    return phases
