"""
recbole_derrd.validation
########################
Up-front checks of the plugin's configuration keys, and of what the data must allow, so that
an impossible setting stops a run with a clear message before any data is loaded or any model
trained. All problems found are reported together.
"""

import math
import numbers
import os

import torch

from recbole_derrd.errors import UserError


class ConfigValueError(UserError, ValueError):
    """One or more configuration values are invalid."""


class ConfigChecker:
    """Collects the problems of one configuration; :meth:`raise_if_any` reports them all."""

    def __init__(self, config):
        self.config = config
        self.problems = []

    def fail(self, message):
        self.problems.append(message)

    def integer(self, key, minimum=None, maximum=None, optional=False):
        value = self.config[key]
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            self.fail(f"{key} must be an integer, got {value!r}")
            return None
        if minimum is not None and value < minimum:
            self.fail(f"{key} must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            self.fail(f"{key} must be at most {maximum}, got {value}")
        return value

    def number(self, key, minimum=None, strictly_positive=False, optional=False):
        value = self.config[key]
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            self.fail(f"{key} must be a finite number, got {value!r}")
            return None
        if strictly_positive and value <= 0:
            self.fail(f"{key} must be positive, got {value}")
        elif minimum is not None and value < minimum:
            self.fail(f"{key} must be at least {minimum}, got {value}")
        return value

    def boolean(self, key):
        value = self.config[key]
        if not isinstance(value, bool):
            self.fail(f"{key} must be True or False, got {value!r}")
        return value

    def choice(self, key, choices):
        value = self.config[key]
        if value not in choices:
            self.fail(f"{key} must be one of {', '.join(map(str, choices))}; got {value!r}")
        return value

    def existing_file(self, key, optional=True):
        value = self.config[key]
        if value is None and optional:
            return None
        if not isinstance(value, str) or not os.path.isfile(value):
            self.fail(f"{key}: file '{value}' does not exist")
        return value

    def raise_if_any(self):
        if self.problems:
            model = self.config["model"]
            raise ConfigValueError(
                f"Invalid configuration for {model}:\n  - " + "\n  - ".join(self.problems)
            )


def check_data_requirements(config, dataset, topn, num_uninteresting):
    """Every user must have ``topn`` non-training items for the teacher's top-N, and
    ``num_uninteresting`` more outside it.

    Raises:
        ConfigValueError: naming how many users fall short and the largest feasible values.
    """
    matrix = dataset.inter_matrix(form="csr")
    matrix.sum_duplicates()
    train_counts = torch.from_numpy((matrix.indptr[1:] - matrix.indptr[:-1]).astype("int64"))
    available = dataset.item_num - 1 - train_counts[1:]  # user 0 is padding
    fewest = int(available.min()) if available.numel() else 0
    problems = []
    if topn > fewest:
        short = int((available < topn).sum())
        problems.append(
            f"rrd_topn={topn} exceeds the items available to {short} user(s): the most active "
            f"user has only {fewest} items outside its training interactions (set rrd_topn <= "
            f"{fewest}, or filter heavy users with user_inter_num_interval)"
        )
    elif topn + num_uninteresting > fewest:
        short = int((available < topn + num_uninteresting).sum())
        problems.append(
            f"rrd_num_uninteresting={num_uninteresting} exceeds the items left outside the "
            f"training items and top-{topn} of {short} user(s) (at least {fewest - topn} for "
            f"every user; lower rrd_num_uninteresting or rrd_topn)"
        )
    if problems:
        raise ConfigValueError(
            f"Invalid configuration for {config['model']} on {config['dataset']}:\n  - "
            + "\n  - ".join(problems)
        )
