r"""
recbole_derrd.pipeline.loss_weights
###################################
The loss weights a run trains with when some are set to ``auto``: those of the run it continues
(a resumed run, decided before any work: :func:`check_automatic_weights`), or those its weight
search chooses once the data and the teacher are prepared (:func:`choose_automatic_weights`,
:mod:`recbole_derrd.pipeline.weight_search`). The chosen numbers replace ``auto`` in the
configuration; the log shows every trial, the cost and the command-line fragment that
reproduces the run without searching.
"""

import dataclasses
import os
from logging import getLogger

from recbole.utils import set_color

from recbole_derrd.errors import CheckpointError
from recbole_derrd.files.checkpoint import RESUME_KIND, read_checkpoint, resume_path
from recbole_derrd.pipeline.distributed import is_distributed
from recbole_derrd.pipeline.weight_search import (
    WeightSearchError,
    automatic_weight_keys,
    command_line,
    search_loss_weights,
)
from recbole_derrd.settings.validation import AUTO


@dataclasses.dataclass
class WeightChoice:
    """How a run's ``auto`` weights were chosen."""

    #: The search's report (plain data; a resumed run's: the one saved in its file), or None
    #: when no weight is ``auto``.
    report: dict = None
    #: The chosen trial's training, for the run to adopt
    #: (:meth:`~recbole_derrd.trainer.SafeCheckpointMixin.adopt_trial`) instead of training it
    #: again; None: no search, a resumed run, or trials shorter than the run.
    chosen_run: dict = None
    #: The search's :class:`~recbole_derrd.pipeline.search_journal.SearchJournal`, for the run
    #: to remove once it has saved its model, or None.
    journal: object = None


def trial_table(report):
    """The trials of ``report`` as a plain-text table, the chosen one marked; a combination
    tried again (by the next weight's round) is listed with the trial it repeats."""
    metric = report["valid_metric"]
    columns = ["trial", "weights", f"valid {metric}", "epochs", "seconds", ""]
    rows = [columns]
    for trial in report["trials"]:
        rows.append([
            str(trial["index"]) if trial["trained"] else f"(= {trial['index']})",
            ", ".join(f"{key}={value}" for key, value in trial["weights"].items()),
            f"{trial['best_valid_score']:.4f}",
            str(trial["epochs"]),
            f"{trial['seconds']:.1f}" if trial["trained"] else "-",
            "chosen" if trial["trained"] and trial["weights"] == report["chosen"] else "",
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths).rstrip())
    return "\n".join(lines)


def resumed_weights(config, resume, keys):
    """The settings of ``keys`` (and of the term switches they decide) in the resume file
    ``resume`` (or beside the best-model file ``resume``), and the report saved there; None
    when it is no readable resume file holding numbers for them (the run's own checks of the
    file then say what is wrong)."""
    path = resume_path(resume) if os.path.isfile(resume_path(resume)) else resume
    try:
        checkpoint = read_checkpoint(path)
    except CheckpointError:
        return None
    if checkpoint.get("kind") != RESUME_KIND:
        return None
    stored = checkpoint.get("config") or {}
    switches = getattr(config.model_class, "term_switches", {})
    settings = {key: stored.get(key) for key in keys}
    settings.update({switches[key]: stored.get(switches[key]) for key in keys if key in switches})
    if any(value is None or isinstance(value, str) for value in settings.values()):
        return None
    report = checkpoint.get("weight_search") or {"settings": settings,
                                                  "command_line": command_line(settings)}
    return settings, dict(report, resumed_from=path)


def trains_student_alone(config):
    """Whether every distillation term ``config`` computes has weight 0."""
    model_class = config.model_class
    switches = getattr(model_class, "term_switches", {})
    computed = [key for key in model_class.loss_weight_keys if key not in switches or config[switches[key]]]
    return all(config[key] == 0 for key in computed)


def check_automatic_weights(config, resume=None):
    """Before any work: a resumed run takes the ``auto`` weights of the run it continues (set in
    ``config``, without searching); a multi-process run with ``auto`` weights is refused.

    Returns:
        WeightChoice: the resumed run's report, or none.

    Raises:
        WeightSearchError: ``auto`` weights in a multi-process run (each process would search
            on its own).
    """
    keys = automatic_weight_keys(config)
    if not keys:
        return WeightChoice()
    if resume is not None:
        resumed = resumed_weights(config, str(resume), keys)
        if resumed is None:
            return WeightChoice()  # the resume file's own checks report what is wrong with it
        settings, report = resumed
        for key, value in settings.items():
            config[key] = value
        getLogger().info(set_color("Loss weights of the resumed run", "green")
                         + f" (no search): {command_line(settings)}")
        return WeightChoice(report)
    if is_distributed(config):
        raise WeightSearchError(
            f"{', '.join(keys)}: '{AUTO}' is chosen by a weight search, which runs in a "
            "single process; run it once in one process (it logs and saves the chosen "
            "numbers), then give them to the multi-process run."
        )
    return WeightChoice()


def choose_automatic_weights(inputs, saved=True, choice=None):
    """The weights of ``inputs.config`` still ``auto``, chosen by a search on the run's prepared
    data and teacher (:func:`~recbole_derrd.pipeline.weight_search.search_loss_weights`) and set
    in the configuration; the trials, the cost and the choice logged.

    Args:
        saved (bool): the run saves checkpoints; then the search keeps a journal of its
            finished trials (:mod:`recbole_derrd.pipeline.search_journal`), and an interrupted
            search started again takes them from it.
        choice (WeightChoice): what :func:`check_automatic_weights` decided, returned when
            nothing is left to search.

    Returns:
        WeightChoice
    """
    config = inputs.config
    if not automatic_weight_keys(config):
        return choice or WeightChoice()
    settings, report, chosen_run, journal = search_loss_weights(inputs, journal=saved)
    for key, value in settings.items():
        config[key] = value
    log_search(config, report, settings)
    return WeightChoice(report, chosen_run, journal)


def log_search(config, report, settings):
    """The trials, the cost and the choice of a search, in the run's log."""
    logger = getLogger()
    logger.info(
        set_color("weight search trials", "yellow") + ":\n" + trial_table(report) + "\n"
        + set_color("weight search cost", "yellow")
        + f": {report['trial_count']} trials, {report['epochs']} epochs, "
        f"{report['seconds']:.1f}s (data and teacher prepared once: "
        f"{report['preparation_seconds']:.1f}s)"
        + (f"; {report['journal_trials']} of the trials from the journal of an interrupted search"
           if report["journal_trials"] else "")
    )
    off = [switch for switch, on in settings.items() if on is False]
    if off:
        logger.info(
            set_color("weight search", "yellow") + f": {', '.join(off)}: a weight of 0 scored "
            "best on validation, so that term is switched off"
        )
    if trains_student_alone(config):
        logger.info(
            set_color("weight search", "yellow") + ": no distillation term helped on validation: "
            "the student trains on its own loss alone (a term kept on has weight 0)"
        )
    logger.info(
        set_color("weight search chose", "yellow")
        + f": {', '.join(f'{key}={value}' for key, value in report['chosen'].items())}; the "
        f"same run without searching: {report['command_line']}"
    )
