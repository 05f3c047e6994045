"""
recbole_derrd.settings.validation
#################################
Up-front checks of the plugin's configuration keys, and of what the data must allow, so that
an impossible setting stops a run with a clear message before any data is loaded or any model
trained. All problems found are reported together.
"""

import math
import numbers
import os

import torch

from recbole.utils import EvaluatorType

from recbole_derrd.data.dataset import training_split
from recbole_derrd.errors import UserError
from recbole_derrd.data.popularity import MAX_POPULARITY_GROUPS
from recbole_derrd.settings.defaults import plugin_default
from recbole_derrd.settings.known_keys import CUSTOM_KEYS, config_key_sources, unknown_key_problems
from recbole_derrd.settings.recbole_values import check_recbole_values
from recbole_derrd.settings.registry import loss_weight_keys
from recbole_derrd.teacher.loading import build_teacher_config, teacher_overrides


class ConfigValueError(UserError, ValueError):
    """One or more configuration values are invalid.

    Attributes:
        problems (list of str): one line per invalid value.
    """

    def __init__(self, message, problems=()):
        super().__init__(message)
        self.problems = list(problems)


#: Sizes of RecBole general models' layers and tables: positive integers.
POSITIVE_SIZE_KEYS = (
    "embedding_size",
    "mf_embedding_size",
    "mlp_embedding_size",
    "user_embedding_size",
    "item_embedding_size",
    "latent_dimension",
)

#: Hidden layer sizes of RecBole general models: non-empty lists of positive integers.
LAYER_SIZES_KEYS = ("mlp_hidden_size", "hidden_size_list", "user_hidden_size_list", "item_hidden_size_list")

#: Dropout probabilities of RecBole general models: in [0, 1).
PROBABILITY_KEYS = ("dropout_prob", "node_dropout", "message_dropout")

#: The value of a loss weight chosen by the weight search (:mod:`recbole_derrd.pipeline.weight_search`).
AUTO = "auto"


def problems_message(title, problems):
    """``title: problem`` on one line for one problem; a list under ``title`` for several."""
    if len(problems) == 1:
        return f"{title}: {problems[0]}"
    return f"{title}:\n  - " + "\n  - ".join(problems)


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

    def loss_weight(self, key):
        """A loss weight: a finite number >= 0, or ``auto`` (chosen on the validation split by
        the weight search). Returns the number, ``auto``, or None when invalid."""
        value = self.config[key]
        if isinstance(value, str) and value == AUTO:
            return AUTO
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            self.fail(
                f"{key} must be a number >= 0, or '{AUTO}' to choose it on the validation "
                f"split; got {value!r}"
            )
            return None
        if value < 0:
            self.fail(f"{key} must be at least 0, got {value}")
            return None
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

    def layer_sizes(self, key):
        value = self.config[key]
        if (
            not isinstance(value, (list, tuple))
            or not value
            or any(isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1
                   for size in value)
        ):
            self.fail(f"{key} must be a non-empty list of positive integers, got {value!r}")
        return value

    def probability(self, key):
        value = self.config[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not math.isfinite(value)
            or not 0 <= value < 1
        ):
            self.fail(f"{key} must be a number in [0, 1), got {value!r}")
        return value

    def raise_if_any(self):
        if self.problems:
            model = self.config["model"]
            raise ConfigValueError(
                problems_message(f"Invalid configuration for {model}", self.problems),
                self.problems,
            )


def check_weight_search_keys(checker, automatic_keys):
    """The weight search's keys (every distiller has them), and what a search needs of the run
    when ``automatic_keys`` (the loss weights set to ``auto``) are searched."""
    config = checker.config
    candidates = config["weight_search_values"]
    if not isinstance(candidates, dict):
        checker.fail(
            "weight_search_values must be a dict of loss weight -> list of candidate values, "
            f"got {candidates!r}"
        )
        candidates = {}
    known = loss_weight_keys()  # every distiller's: one file of settings serves them all
    for key, values in candidates.items():
        if key not in known:
            checker.fail(
                f"weight_search_values: unknown loss weight {key!r} (the distillers' weights: "
                f"{', '.join(known)})"
            )
        elif (
            not isinstance(values, (list, tuple))
            or not values
            or any(isinstance(value, bool) or not isinstance(value, numbers.Real)
                   or not math.isfinite(value) or value < 0 for value in values)
        ):
            checker.fail(
                f"weight_search_values: {key} must be a non-empty list of numbers >= 0 (0 tries "
                f"the run without that term), got {values!r}"
            )
    checker.integer("weight_search_epochs", minimum=1, optional=True)
    checker.integer("weight_search_stopping_step", minimum=1, optional=True)
    defaults = plugin_default(config, "weight_search_values") if automatic_keys else {}
    for key in automatic_keys:
        if key not in candidates and key not in (defaults or {}):
            checker.fail(
                f"{key}: '{AUTO}' needs candidates: give weight_search_values a list for {key} "
                f"(the defaults of {config['model']} have none)"
            )
    if automatic_keys:
        eval_step = config["eval_step"]
        if isinstance(eval_step, numbers.Integral) and eval_step < 1:
            checker.fail(
                f"{', '.join(automatic_keys)}: '{AUTO}' is chosen on the validation split, and "
                f"eval_step {eval_step} turns validation off (set eval_step >= 1, or give "
                "the weights numbers)"
            )


def check_training_keys(checker):
    """RecBole's keys that every model trains with, and the size keys of a RecBole general
    model (those its configuration has): an impossible value would otherwise train nothing
    (``epochs: 0`` reports an untrained model's metrics) or crash inside training."""
    config = checker.config
    checker.integer("epochs", minimum=1)
    checker.number("learning_rate", strictly_positive=True)
    checker.integer("train_batch_size", minimum=1)
    checker.integer("eval_batch_size", minimum=1)
    check_recbole_values(checker)  # RecBole's keys it would fail on late, or ignore
    final = config.final_config_dict
    for key in POSITIVE_SIZE_KEYS:
        if key in final:
            checker.integer(key, minimum=1)
    for key in LAYER_SIZES_KEYS:
        if key in final:
            checker.layer_sizes(key)
    for key in PROBABILITY_KEYS:
        if key in final:
            checker.probability(key)
    if "n_layers" in final:
        checker.integer("n_layers", minimum=0)
    if "trust_checkpoint" in final:
        checker.boolean("trust_checkpoint")
    if "popularity_groups" in final:
        check_popularity_groups(checker)
    if final.get("use_pretrain") is True and config["trust_checkpoint"] is not True:
        if not torch_load_is_weights_only():
            checker.fail(
                f"use_pretrain: NeuMF reads mf_pretrain_path / mlp_pretrain_path with torch.load, "
                f"which in torch {torch.__version__} unpickles them (running whatever code they "
                "contain); opt in with trust_checkpoint: True, or use torch >= 2.6"
            )


def check_popularity_groups(checker):
    """``popularity_groups``: 0 (off) to :data:`~recbole_derrd.data.popularity.MAX_POPULARITY_GROUPS`,
    and, when on, a ranking evaluation (it reports Recall@k of the ranking)."""
    groups = checker.integer("popularity_groups", minimum=0, maximum=MAX_POPULARITY_GROUPS)
    if groups and checker.config["eval_type"] != EvaluatorType.RANKING:
        checker.fail(
            f"popularity_groups={groups} reports Recall@k of each item-popularity group, which "
            "needs a ranking evaluation (top-k metrics such as Recall, NDCG); this run's metrics "
            "are value metrics (set popularity_groups: 0, or evaluate with top-k metrics)"
        )


def torch_load_is_weights_only():
    """Whether ``torch.load`` without ``weights_only`` loads safely (torch >= 2.6), as RecBole's
    own loads call it (NeuMF's pretrained tables)."""
    major, minor = (int(part) for part in torch.__version__.split(".")[:2])
    return (major, minor) >= (2, 6)


def check_config(config):
    """Every check of a configuration, all problems reported together: the training keys
    (:func:`check_training_keys`), the model's own ``check_config``, then, for a distiller
    whose teacher is trained on demand, the teacher's own configuration, as strictly.

    Raises:
        ConfigValueError
    """
    checker = ConfigChecker(config)
    checker.problems += unknown_key_problems(config_key_sources(config), config[CUSTOM_KEYS])
    check_training_keys(checker)
    problems = list(checker.problems)
    model_check = getattr(config.model_class, "check_config", None)
    if model_check is not None:
        try:
            model_check(config)
        except ConfigValueError as error:
            problems += [problem for problem in error.problems if problem not in problems]
    if not problems and getattr(config.model_class, "is_distiller", False):
        if not config["teacher_checkpoint"]:
            problems += teacher_config_problems(config)
    if problems:
        raise ConfigValueError(
            problems_message(f"Invalid configuration for {config['model']}", problems),
            problems,
        )


def teacher_config_problems(config):
    """The problems of an on-demand teacher's own configuration (``teacher_model``,
    ``teacher_embedding_size``, ``teacher_config``), found by building it: checked before
    anything is trained or cached."""
    teacher_keys = "teacher_model / teacher_embedding_size / teacher_config"
    try:
        unknown = unknown_key_problems({"in teacher_config": list(teacher_overrides(config))},
                                       config[CUSTOM_KEYS])
        if unknown:
            return [f"the on-demand teacher: {problem}" for problem in unknown]
        build_teacher_config(config)
    except ConfigValueError as error:
        return [f"the on-demand teacher ({teacher_keys}): {problem}" for problem in error.problems]
    except Exception as error:  # RecBole's configurator fails in many ways on a bad value
        return [f"the on-demand teacher's settings ({teacher_keys}) cannot be used: "
                f"{type(error).__name__}: {error}"]
    return []


def check_data_requirements(config, dataset, topn, num_uninteresting, topn_key="rrd_topn",
                            uninteresting_key="rrd_num_uninteresting", split=None):
    """Every user must have ``topn`` non-training items for the teacher's top-N, and
    ``num_uninteresting`` more outside it.

    Args:
        topn_key, uninteresting_key (str): the calling distiller's keys of ``topn`` and
            ``num_uninteresting``, named in the message.
        split (TrainingSplit): the training split of ``dataset``, if the run holds it.

    Raises:
        ConfigValueError: naming how many users fall short and the largest feasible values.
    """
    indptr = training_split(dataset, split).interactions[0]
    train_counts = indptr[1:] - indptr[:-1]
    available = dataset.item_num - 1 - train_counts[1:]  # user 0 is padding
    fewest = int(available.min()) if available.numel() else 0
    problems = []
    if topn > fewest:
        short = int((available < topn).sum())
        problems.append(
            f"{topn_key}={topn} exceeds the items available to {short} user(s): the most active "
            f"user has only {fewest} items outside its training interactions (set {topn_key} <= "
            f"{fewest}, or filter heavy users with user_inter_num_interval)"
        )
    elif topn + num_uninteresting > fewest:
        short = int((available < topn + num_uninteresting).sum())
        problems.append(
            f"{uninteresting_key}={num_uninteresting} exceeds the items left outside the "
            f"training items and top-{topn} of {short} user(s) (at least {fewest - topn} for "
            f"every user; lower {uninteresting_key} or {topn_key})"
        )
    if problems:
        raise ConfigValueError(
            problems_message(f"Invalid configuration for {config['model']} on {config['dataset']}",
                             problems)
        )
