"""
recbole_derrd.pipeline.student_alone
####################################
The student alone: what a distillation is measured against. With ``compare_student_alone:
True`` (the default), a distiller's run (:func:`recbole_derrd.quick_start.run_recbole_derrd`)
also trains, or reads from its cache, the same student trained without a teacher, evaluates it
on the run's validation and test splits, and reports it next to the distilled student and the
teacher, with a warning when the distilled student is the worse of the two on validation.

- The student alone is RecBole's model ``student_model`` (the distiller's student backbone)
  with the distiller's configuration less the keys only distillers read
  (:func:`recbole_derrd.settings.defaults.distillation_keys`: ``student_model``, the teacher's, the
  distillation losses'), ``loss_reduction`` kept: the same dataset, split, seed, learner,
  training, evaluation and early-stopping keys, and the student's own size keys.
- It trains the distilled student's objective less the distillation terms
  (:mod:`recbole_derrd.pipeline.student_objective`): the backbone's loss under the distiller's
  ``loss_reduction`` (its base term) and the distillers' optimizer, so ``weight_decay`` weighs
  the same on both whatever the reduction. It is the distiller with every distillation weight
  at 0, without a teacher (none is loaded or scored).
- It is cached like the on-demand teacher (:mod:`recbole_derrd.teacher.cache`, with
  :func:`recbole_derrd.pipeline.training.find_or_train`): ``<checkpoint_dir>/student-alone-<Model>-
  <dataset>-<fingerprint>.pth``, the fingerprint of its own configuration and the training
  split (``loss_reduction`` included). Distillation-only keys (``lambda_*``, the teacher's) are
  not part of it, so every distillation of one student on one split reuses one file; it is trained once, under the
  cache's lock, in a preserved random state, after the distilled student's test: the distilled
  run's results are the same with the comparison on or off.
- A multi-process run skips it (logged): the comparison is a single-process convenience.
"""

import dataclasses
from logging import getLogger

from recbole.utils import calculate_valid_score, set_color

from recbole_derrd.files.checkpoint import plain_config, read_checkpoint
from recbole_derrd.settings.defaults import distillation_keys
from recbole_derrd.pipeline.distributed import is_distributed
from recbole_derrd.errors import CheckpointError
from recbole_derrd.settings.keys import rebuilt_parameters
from recbole_derrd.pipeline.training import evaluate_model, find_or_train, parameter_count, train_and_cache
from recbole_derrd.pipeline.random_state import preserved_random_state
from recbole_derrd.pipeline.student_objective import OBJECTIVE_KEYS, student_alone_trainer
from recbole_derrd.settings.registry import recbole_model
from recbole_derrd.teacher.cache import cache_path

#: The role of the student alone in the cache (its file name's prefix).
ROLE = "student-alone"


def student_alone_config(config):
    """The configuration of the distiller's student trained alone: the distiller's final
    configuration (``config``) less the keys only distillers read (but those of its objective,
    ``loss_reduction``), for the model ``student_model``, built by the distiller's configurator
    (the command line is not parsed: what it set is in ``config`` already)."""
    removed = distillation_keys(config["student_model"]) - set(OBJECTIVE_KEYS)
    plain = {key: value for key, value in plain_config(config).items() if key not in removed}
    return type(config)(
        model=config["student_model"],
        dataset=config["dataset"],
        config_dict=rebuilt_parameters(plain, {"trust_checkpoint": config["trust_checkpoint"]}),
        parse_command_line=False,
    )


def student_alone_path(config, alone_config, data_fingerprint):
    """``<checkpoint_dir>/student-alone-<Model>-<dataset>-<fingerprint>.pth``."""
    return cache_path(config, alone_config, data_fingerprint, ROLE)


def train_student_alone(alone_config, path, data_fingerprint):
    """Train the student alone (the distilled student's objective less the distillation terms)
    and cache it at ``path``, with its validation and test results."""
    trainer_class = student_alone_trainer(alone_config)
    train_and_cache(alone_config, path, data_fingerprint, ROLE, trainer_class=trainer_class)


def prepare_student_alone(config, split, alone_config=None):
    """The path of the cached student alone of the distiller's run ``config`` on the training
    ``split``; trained now (and cached) if missing.

    Args:
        split (TrainingSplit): the distiller's training split.
        alone_config (Config): :func:`student_alone_config` of ``config``, if already built.
    """
    if alone_config is None:
        alone_config = student_alone_config(config)
    path = student_alone_path(config, alone_config, split.fingerprint)
    # train_student_alone looked up now, not bound at import: tests replace it
    find_or_train(config, alone_config, path, split.fingerprint, ROLE, train_student_alone)
    return path


def load_student_alone(alone_config, path, dataset, data_fingerprint):
    """The cached student alone at ``path``, built on the distiller's training ``dataset``, in
    eval mode.

    Raises:
        CheckpointError: the file was trained on another split (changed since it was cached).
    """
    checkpoint = read_checkpoint(path)
    if checkpoint.get("split_fingerprint") != data_fingerprint:
        raise CheckpointError(
            f"The cached student alone '{path}' was trained on another training split than "
            "this run's; delete it to train it again."
        )
    model = recbole_model(alone_config["model"])(alone_config, dataset)
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    return model.to(alone_config["device"]).eval()


def relative_change(value, reference):
    """``value`` relative to ``reference``, in percent (None where the reference is 0)."""
    if not reference:
        return None
    return 100.0 * (value - reference) / abs(reference)


def format_change(change):
    return "-" if change is None else f"{change:+.1f}%"


@dataclasses.dataclass
class StudentAloneComparison:
    """The student alone next to a distilled student: what the run's table and warning show."""

    #: RecBole model of the student alone (the distiller's ``student_model``).
    model_name: str
    #: The cached student alone.
    checkpoint: str
    parameters: int
    valid_result: dict
    test_result: dict
    #: The ``valid_metric`` (RecBole's lower-case name) and whether bigger is better.
    valid_metric: str
    bigger_is_better: bool
    distilled_valid_score: float
    alone_valid_score: float
    #: The distiller (e.g. ``DERRD: BPR``) and its distillation weights, for the warning.
    distiller_name: str
    distillation_weights: dict

    @property
    def valid_change(self):
        """The distilled student's validation score relative to the student alone's (%)."""
        return relative_change(self.distilled_valid_score, self.alone_valid_score)

    @property
    def distilled_is_worse(self):
        """Whether the distilled student's best validation score is below the student alone's
        (above it for a metric where smaller is better)."""
        if self.bigger_is_better:
            return self.distilled_valid_score < self.alone_valid_score
        return self.distilled_valid_score > self.alone_valid_score

    def warning_message(self):
        """What the run warns when distillation made the student worse, and what to try."""
        weights = ", ".join(f"{key}={value}" for key, value in self.distillation_weights.items())
        change = self.valid_change
        by = f" ({format_change(change)})" if change is not None else ""
        return (
            f"The distilled student ({self.distiller_name}) is worse than the same student "
            f"trained alone on the validation split: {self.valid_metric} "
            f"{self.distilled_valid_score:.4f} vs {self.alone_valid_score:.4f}{by}. "
            f"Distillation hurt this student: try lower distillation weights ({weights}), a "
            "stronger teacher (its test metrics are in the table above) or another "
            f"learning_rate; or deploy the student alone ({self.checkpoint})."
        )


def distillation_weights(config):
    """The distiller's loss weights (its ``loss_weight_keys``) and their values in ``config``,
    those of terms switched off (e.g. ``lambda_de`` with ``use_de: False``) left out."""
    keys = config.model_class.loss_weight_keys
    switches = getattr(config.model_class, "term_switches", {})

    def term_on(key):
        return key not in switches or config[switches[key]] is not False

    return {key: config[key] for key in sorted(keys) if term_on(key)}


def compare_student_alone(inputs, model, distilled_valid_result=None):
    """The student alone of the distiller ``model``'s run, trained (or read from the cache)
    and evaluated on the run's validation and test splits with the run's evaluator settings.

    The global random state is left as it was.

    Args:
        inputs (RunInputs): the run's configuration, data, split and teacher
            (:func:`~recbole_derrd.pipeline.training.prepare_inputs`).
        model (Distiller): the distilled model, as tested.
        distilled_valid_result (dict): the distilled student's best validation result (its
            training's); None: the distilled student is evaluated on the validation split now.

    Returns:
        StudentAloneComparison, or None in a multi-process run (skipped).
    """
    config, split = inputs.config, inputs.split
    train_data, valid_data, test_data = inputs.train_data, inputs.valid_data, inputs.test_data
    logger = getLogger()
    if is_distributed(config):
        logger.info(
            set_color("compare_student_alone", "yellow")
            + f": skipped in a multi-process run; train {config['student_model']} with the "
            "same keys to compare"
        )
        return None
    valid_metric = config["valid_metric"].lower()
    with preserved_random_state():
        alone_config = student_alone_config(config)
        path = prepare_student_alone(config, split, alone_config)
        alone = load_student_alone(alone_config, path, train_data.dataset, split.fingerprint)
        valid_result = evaluate_model(alone_config, alone, train_data, valid_data)
        test_result = evaluate_model(alone_config, alone, train_data, test_data)
        if not distilled_valid_result:  # no validation during training (eval_step)
            distilled_valid_result = evaluate_model(config, model, train_data, valid_data)
    distilled_score = calculate_valid_score(distilled_valid_result, valid_metric)
    alone_score = calculate_valid_score(valid_result, valid_metric)
    return StudentAloneComparison(
        model_name=alone_config["model"],
        checkpoint=path,
        parameters=parameter_count(alone),
        valid_result=valid_result,
        test_result=test_result,
        valid_metric=valid_metric,
        bigger_is_better=bool(config["valid_metric_bigger"]),
        distilled_valid_score=float(distilled_score),
        alone_valid_score=float(alone_score),
        distiller_name=f"{config['model']}: {config['student_model']}",
        distillation_weights=distillation_weights(config),
    )
