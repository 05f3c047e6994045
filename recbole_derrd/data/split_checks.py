"""
recbole_derrd.data.split_checks
###############################
What a run needs of its data and split, checked before RecBole splits the data and right after,
before any model (or teacher) is trained.

RecBole accepts, silently or with an internal error, splits no run can use:

- a split that leaves no validation (or no test) interaction: training then runs without
  validation, a teacher's training ends in a ``TypeError`` and a baseline reports ``None``
  metrics;
- a user who interacted with every item, where negatives are sampled (RecBole's sampler fails
  with its own traceback: no negative item exists for that user);
- ``eval_args`` ordered by time (``order: TO``) while the time column is not loaded (a
  ``ValueError`` deep in the split).

Each is refused here with what is wrong and what to change.
"""

import numpy as np

from recbole_derrd.errors import UserError


class DatasetSplitError(UserError, ValueError):
    """The data, split as configured, cannot train or evaluate a model."""


def _column(feature, field):
    """A column of RecBole's interaction table as a NumPy array (a pandas frame before RecBole
    converts it, an ``Interaction`` of tensors after)."""
    values = feature[field]
    return values.numpy() if hasattr(values, "numpy") else np.asarray(values)


def _has_column(feature, field):
    if field is None:
        return False
    columns = getattr(feature, "columns", None)
    return field in (columns if columns is not None else feature.interaction)


def samples_negatives(config):
    """Whether RecBole's sampler will draw negative items for this run (training or sampled
    evaluation, without ``repeatable``)."""
    sampled = [
        config[key] for key in ("train_neg_sample_args", "valid_neg_sample_args", "test_neg_sample_args")
    ]
    return not config["repeatable"] and any(
        isinstance(args, dict) and args.get("distribution") not in (None, "none") for args in sampled
    )


def check_before_split(config, dataset):
    """Refuse, before RecBole splits ``dataset``: time ordering without the time column, and
    users with every item where negatives are sampled.

    Raises:
        DatasetSplitError
    """
    order = (config["eval_args"] or {}).get("order")
    time_field = config["TIME_FIELD"]
    if order == "TO" and not _has_column(dataset.inter_feat, time_field):
        raise DatasetSplitError(
            f"eval_args orders the interactions by time (order: TO), but the time column "
            f"'{time_field}' is not loaded from {config['dataset']}'s interaction file (add it to "
            "load_col's 'inter' list, set TIME_FIELD to the file's time column, or use order: RO)."
        )
    if samples_negatives(config):
        check_users_have_negatives(config, dataset)


def check_users_have_negatives(config, dataset):
    """Every user must have an item left to sample as a negative."""
    feature, uid_field, iid_field = dataset.inter_feat, dataset.uid_field, dataset.iid_field
    pairs = np.unique(np.stack([_column(feature, uid_field), _column(feature, iid_field)]), axis=1)
    users, counts = np.unique(pairs[0], return_counts=True)
    full = users[counts >= dataset.item_num - 1]  # item id 0 is padding
    if full.size:
        example = dataset.id2token(uid_field, int(full[0]))
        raise DatasetSplitError(
            f"{full.size} user(s) of {config['dataset']} (e.g. '{example}') interacted with every "
            f"one of its {dataset.item_num - 1} items, so no negative item can be sampled for them "
            "(train_neg_sample_args, or a sampled evaluation mode). Leave them out, e.g. with "
            f"user_inter_num_interval: '[0,{dataset.item_num - 1})'."
        )


def check_after_split(config, train_data, valid_data, test_data):
    """Refuse a split that leaves no training, validation or test interaction.

    Raises:
        DatasetSplitError
    """
    empty = [
        name
        for name, data in (("training", train_data), ("validation", valid_data), ("test", test_data))
        if data is not None and len(data.dataset) == 0
    ]
    if empty:
        raise DatasetSplitError(
            f"The split of {config['dataset']} (eval_args {config['eval_args']}) leaves no "
            f"{' and no '.join(empty)} interaction: its users have too few interactions for "
            "these ratios. Keep users with enough interactions (e.g. user_inter_num_interval: "
            "'[10,inf)'), or change eval_args' split."
        )
