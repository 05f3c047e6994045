r"""
recbole_derrd.pipeline.weight_search
####################################
Automatic choice of a distiller's loss weights: a weight set to ``auto`` (``lambda_rrd: auto``,
likewise ``lambda_de``, ``lambda_rd``, ``lambda_cd``, ``lambda_unkd``, ``lambda_htd``) is chosen on the
validation split by trial runs before the run trains, and the run then trains with the
chosen number.

- **Candidates**: ``weight_search_values[key]`` (a key missing there takes the plugin's default
  list). A candidate of 0 trains without that term, so the search can turn off a distillation
  that does not help on validation: DERRD switches a term with weight 0 off (``use_de`` /
  ``use_rrd``: False) rather than computing it with weight 0; were both its terms off, RRD stays
  on with weight 0 (the student trains on its own loss alone, and RRD is the cheap term).
- **Order**: several ``auto`` weights are chosen one after the other (coordinate search, in the
  model's ``loss_weight_keys`` order: DERRD's ``lambda_rrd`` then ``lambda_de``), each with the
  weights not yet chosen at the plugin's defaults; then, if every list holds 0 and the rounds
  did not reach it, every weight at 0 (the student alone), so that it is always a candidate.
  Trials: at most the sum of the candidate counts, plus that one (a combination already
  trained is not trained again).
- **Trials**: the data, the split and the teacher are prepared once (an on-demand teacher is
  trained, or found in the cache, as by any run; its top-N read or computed once) and handed to
  every trial; each trial is a fresh model, seeded as the run seeds it, starting from the same
  random state, trained for at most ``min(weight_search_epochs, epochs)`` epochs with early
  stopping after ``weight_search_stopping_step`` evaluations without improvement, scored by
  ``valid_metric`` on the validation split; the test split is never used.
  By default (both keys ``~``) a trial is as long as the run, with the run's patience: the
  choice compares converged runs, and the chosen trial is the run's own training (the run
  adopts its best model instead of training it again). Shorter
  trials are cheaper but biased: distillation speeds up the first epochs, so trials stopped
  long before convergence favour the strongest weight (on ml-100k and Last.fm, 30-epoch trials
  chose the largest weight offered, and on Last.fm a student worse than the student alone).
  Schedules that follow ``epochs`` (DE's annealing) keep the full run's length, so a short
  trial is the start of the run it stands for.
- **Choice**: the best validation score (``valid_metric_bigger``), ties to the smaller weight
  (to the student alone in the last comparison).
- **Journal**: a run that saves checkpoints records each finished trial on disk, and each
  trial writes a best-model and a resume file as a run does
  (:mod:`recbole_derrd.pipeline.search_journal`); the same search started again after an interruption
  takes the finished trials from there, continues the interrupted one from its last epoch and
  trains the others.
- **Record**: the chosen numbers replace ``auto`` in the configuration (so the checkpoint's
  configuration holds them); the log shows every trial, the cost (trials, epochs, seconds) and
  the command-line fragment that reproduces the run without searching; the report is returned
  by :func:`~recbole_derrd.quick_start.run_recbole_derrd` (``weight_search``) and saved in its
  checkpoints. A resumed run takes the weights of the run it continues, without searching.
"""

import contextlib
import math
import os
import time
from contextlib import contextmanager
from logging import getLogger

from recbole.utils import set_color

from recbole_derrd.files.checkpoint import RESUME_KIND, read_checkpoint, read_resume_file, resume_path, to_plain
from recbole_derrd.data.dataset import TrainingSplit
from recbole_derrd.settings.defaults import plugin_default
from recbole_derrd.pipeline.distributed import is_distributed
from recbole_derrd.errors import CheckpointError, UserError
from recbole_derrd.pipeline.training import build_model, build_trainer, prepare_data, prepare_distiller_teacher
from recbole_derrd.pipeline.random_state import run_random_state, set_run_random_state
from recbole_derrd.pipeline.search_journal import SearchJournal, stored_trained_run
from recbole_derrd.teacher.loading import read_teacher_checkpoint
from recbole_derrd.settings.validation import AUTO


#: The ``key`` of the trial with every searched weight at 0, after the weights' own rounds.
STUDENT_ALONE = "student alone"


class WeightSearchError(UserError, ValueError):
    """A loss weight set to ``auto`` where no weight search can run."""


def automatic_weight_keys(config):
    """The loss weights of ``config``'s model set to ``auto``, in the order they are chosen."""
    keys = getattr(config.model_class, "loss_weight_keys", ())
    return [key for key in keys if isinstance(config[key], str) and config[key] == AUTO]


def refuse_automatic_weights(config, where):
    """Raise :class:`WeightSearchError` if a weight of ``config`` is ``auto`` (``where``: what
    cannot search, for the message)."""
    keys = automatic_weight_keys(config)
    if keys:
        raise WeightSearchError(
            f"{', '.join(keys)}: '{AUTO}' is not supported by {where}; give "
            f"{'it a number' if len(keys) == 1 else 'them numbers'} (e.g. those a run with "
            f"'{AUTO}' logs and saves)."
        )


def candidate_values(config, key):
    """The candidates of ``key``, ascending, without repeats: ``weight_search_values[key]``, or
    the distiller's default list when the user's dict leaves ``key`` out."""
    values = config["weight_search_values"].get(key)
    if values is None:
        values = plugin_default(config, "weight_search_values")[key]
    return sorted(set(values))


def best_value(value_scores, bigger):
    """The value whose validation score is best.

    Args:
        value_scores (list of tuple): ``(value, best valid score)`` of every trial of one weight.
        bigger (bool): ``valid_metric_bigger``.

    Returns:
        The value of the best score; among equal scores the smallest value (the weaker
        distillation, the cheaper run). A score that is not a number (a diverged trial) is
        the worst.
    """

    def badness(value_score):
        value, score = value_score
        score = float(score)
        if math.isnan(score):
            return math.inf, value
        return (-score if bigger else score), value

    return min(value_scores, key=badness)[0]


def weight_settings(model_class, weights, switches_on):
    """The configuration values of a run with the searched ``weights`` ({key: number}).

    A DERRD term whose searched weight is 0 is switched off; if that would leave no term on,
    the first of them (RRD) stays on with weight 0.

    Args:
        model_class: the distiller (its ``term_switches``).
        switches_on (dict): the user's value of every switch (``use_de``...).
    """
    settings = dict(weights)
    switches = getattr(model_class, "term_switches", {})
    zero = [switches[key] for key in switches if weights.get(key) == 0]
    if not zero:
        return settings
    if not any(on and switch not in zero for switch, on in switches_on.items()):
        zero = zero[1:]  # every term would be off: the first stays on, with weight 0
    settings.update({switch: False for switch in zero})
    return settings


def command_line(settings):
    """``--key=value`` for every entry of ``settings``: the run without searching again."""
    return " ".join(f"--{key}={value}" for key, value in settings.items())


@contextmanager
def config_values(config, values):
    """``config`` with ``values`` set for the block, restored afterwards."""
    saved = {key: config[key] for key in values}
    for key, value in values.items():
        config[key] = value
    try:
        yield config
    finally:
        for key, value in saved.items():
            config[key] = value


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


def trial_length(config):
    """``epochs`` and ``stopping_step`` of a trial: ``weight_search_epochs`` (at most the run's
    ``epochs``) and ``weight_search_stopping_step``, each ``~`` meaning the run's own."""
    epochs = config["weight_search_epochs"]
    stopping_step = config["weight_search_stopping_step"]
    return {
        "epochs": config["epochs"] if epochs is None else min(epochs, config["epochs"]),
        "stopping_step": config["stopping_step"] if stopping_step is None else stopping_step,
    }


def search_loss_weights(config, teacher_checkpoint=None, journal=False):
    r"""Choose the ``auto`` loss weights of ``config`` on the validation split (module
    docstring: candidates, order, trials, choice). ``config`` is left as it was.

    Args:
        config (Config): the run's configuration, with at least one weight ``auto``.
        teacher_checkpoint (dict): the teacher file, if already read.
        journal (bool): keep a journal of the finished trials in ``checkpoint_dir``
            (:mod:`recbole_derrd.pipeline.search_journal`), and take the trials an interrupted search
            of the same settings finished from it instead of training them again.

    Returns:
        tuple: ``(settings, report, chosen_run)``: the configuration values of the chosen
        weights (and the DERRD terms they switch off); the search's report: ``chosen`` (weights),
        ``settings``, ``command_line``, ``trials`` (each: ``index``, ``key``: the weight whose
        round it belongs to, or :data:`STUDENT_ALONE`; ``value``, ``weights``,
        ``best_valid_score``, ``best_valid_result``, ``epochs``, ``seconds``, ``trained``: False
        for a combination trained before, whose result it repeats),
        ``trial_count``, ``epochs``, ``seconds`` (the trials, those taken from the journal
        included), ``journal_trials`` (how many were), ``preparation_seconds`` (data and
        teacher), ``valid_metric``, ``valid_metric_bigger``, ``trial_epochs``,
        ``trial_stopping_step``, ``chosen_trial_adopted``; the chosen trial's training
        (:meth:`~recbole_derrd.trainer.SafeCheckpointMixin.trained_run`) for the run to adopt,
        or None when trials are shorter than the run; and the
        :class:`~recbole_derrd.pipeline.search_journal.SearchJournal` (None without ``journal``), for
        the run to remove once it has saved its model.
    """
    logger = getLogger()
    model_class = config.model_class
    keys = automatic_weight_keys(config)
    bigger = config["valid_metric_bigger"]
    candidates = {key: candidate_values(config, key) for key in keys}
    weights = {key: plugin_default(config, key) for key in keys}  # those not yet chosen
    switches_on = {switch: config[switch] for switch in getattr(model_class, "term_switches", {}).values()}
    trial_config = dict(
        model_class.schedule_settings(config),
        **trial_length(config),
    )
    order = "; then ".join(
        f"{key} over {candidates[key]}"
        + (f" (from {', '.join(f'{other}={weights[other]}' for other in keys[i + 1:])})"
           if i + 1 < len(keys) else "")
        for i, key in enumerate(keys)
    )
    logger.info(
        set_color("Weight search", "green")
        + f": {order}. Trials of at most {trial_config['epochs']} epochs, patience "
        f"{trial_config['stopping_step']}, scored by {config['valid_metric']} on the validation "
        "split (the test split is not used). A candidate of 0 trains without that term: a "
        "distillation that does not help on validation is switched off, and with 0 in every "
        "list the student alone is a candidate, so distillation that hurts is not chosen."
    )

    start = time.perf_counter()
    # once for every trial: data, split, teacher (trained or found in the cache) and its top-N
    _, train_data, valid_data, _ = prepare_data(config)
    split = TrainingSplit(train_data.dataset)
    teacher = prepare_distiller_teacher(config, split, teacher_checkpoint)
    # every trial starts from the state the run starts from (its dataloader's shuffling too)
    start_state = run_random_state(train_data)
    preparation_seconds = time.perf_counter() - start

    trials, trained = [], {}  # trained: the trial of each settings signature
    # A trial as long as the run, with the run's patience, is the run with those weights: the
    # chosen one is adopted by the run instead of being trained again (its best model is
    # kept: those of the current round and the current choice, no others)
    adoptable = trial_config["epochs"] == config["epochs"] and trial_config["stopping_step"] == config["stopping_step"]
    kept_runs = {}

    def signature(trial_weights):
        return tuple(sorted(weight_settings(model_class, trial_weights, switches_on).items()))

    def trial_score(round_key, value, trial_weights):
        """The best validation score with ``trial_weights``: trained now, or repeated from an
        earlier trial of the same settings (listed again, not trained again)."""
        settings = weight_settings(model_class, trial_weights, switches_on)
        if signature(trial_weights) in trained:
            trial = dict(trained[signature(trial_weights)], key=round_key, value=value, trained=False)
        else:
            journaled = search_journal.finished(settings) if search_journal is not None else None
            if journaled is not None:  # finished by an interrupted search of these settings
                trial = dict(journaled, from_journal=True)
                trained_run = search_journal.trained_run(settings) if adoptable else None
            else:
                model_file = None if search_journal is None else search_journal.trial_model_file(settings)
                trial = run_trial(config, dict(trial_config, **settings), train_data, valid_data,
                                  split, teacher, start_state, keep=adoptable, model_file=model_file)
                trained_run = trial.pop("trained_run", None)
                record, written = trial.pop("record"), trial.pop("model_file")
                trial["from_journal"] = False
                if search_journal is not None:
                    # finished: its resume file goes; its best model stays if the run may adopt it
                    search_journal.record(settings, trial, record, written if adoptable else None)
                    for leftover in [resume_path(model_file)] + ([] if adoptable else [model_file]):
                        if os.path.isfile(leftover):
                            os.remove(leftover)
            # a trial that never improved on validation (diverged) has no best state to adopt
            kept_runs[signature(trial_weights)] = trained_run if trained_run and trained_run["state"] else None
            trial.update(index=len(trained) + 1, key=round_key, value=value,
                         weights=dict(trial_weights), trained=True)
            trained[signature(trial_weights)] = trial
            logger.info(
                set_color(f"weight search trial {trial['index']}", "blue") + ": "
                + ", ".join(f"{name}={number}" for name, number in trial_weights.items())
                + f": valid {config['valid_metric']} {trial['best_valid_score']:.4f} after "
                f"{trial['epochs']} epochs ({trial['seconds']:.1f}s"
                + (", from the journal)" if trial["from_journal"] else ")")
            )
        trials.append(trial)
        return trial["best_valid_score"]

    journal_context = (SearchJournal.opened(config, split.fingerprint, trial_config) if journal
                       else contextlib.nullcontext())
    with journal_context as search_journal:  # its lock held while the trials train
        if search_journal is not None and search_journal.trials:
            logger.info(
                set_color("Weight search journal", "green") + f": {search_journal.path}: "
                f"{len(search_journal.trials)} trial(s) of an interrupted search of these "
                "settings finished; taken from it, not trained again"
            )
        for key in keys:
            value_scores = [(value, trial_score(key, value, dict(weights, **{key: value})))
                            for value in candidates[key]]
            weights[key] = best_value(value_scores, bigger)
            kept_runs = {signature(weights): kept_runs.get(signature(weights))}
        # one weight at a time reaches every weight at 0 (the student alone) only if the
        # earlier rounds chose 0: tried at the end, so that it is always a candidate, ties
        # going to it
        student_alone = {key: 0 for key in keys}
        if len(keys) > 1 and all(0 in candidates[key] for key in keys) and weights != student_alone:
            chosen_score = trained[signature(weights)]["best_valid_score"]
            alone_score = trial_score(STUDENT_ALONE, 0, student_alone)
            if best_value([(0, alone_score), (1, chosen_score)], bigger) == 0:
                weights = student_alone

    settings = weight_settings(model_class, weights, switches_on)
    chosen_run = kept_runs.get(signature(weights))
    report = {
        "chosen": dict(weights),
        "settings": settings,
        "command_line": command_line(settings),
        "trials": trials,
        "trial_count": len(trained),
        "epochs": sum(trial["epochs"] for trial in trained.values()),
        "seconds": sum(trial["seconds"] for trial in trained.values()),
        "journal_trials": sum(trial["from_journal"] for trial in trained.values()),
        "preparation_seconds": preparation_seconds,
        "valid_metric": config["valid_metric"],
        "valid_metric_bigger": bigger,
        "trial_epochs": trial_config["epochs"],
        "trial_stopping_step": trial_config["stopping_step"],
        "chosen_trial_adopted": chosen_run is not None,
    }
    return settings, to_plain(report), chosen_run, search_journal


def run_trial(config, trial_settings, train_data, valid_data, split, teacher, start_state,
              keep=False, model_file=None):
    """Train one fresh model with ``trial_settings`` set in ``config``.

    Args:
        keep (bool): return the best epoch's model (``trained_run``), for the run to adopt if
            this trial is chosen (a trial as long as the run is that run).
        model_file (str): the trial's best-model file (a search with a journal): the trial
            writes it and a resume file beside it as a run does, and continues from that
            resume file where an interrupted search left it (:func:`continuable_trial`).
            None: no file is written (with ``keep`` the best model is kept in memory).

    Returns:
        dict: ``best_valid_score``, ``best_valid_result``, ``epochs`` (trained, those before an
        interruption included), ``seconds`` (this process's, plus the training time of the
        epochs before an interruption), ``record`` (``train_loss`` as ``[[epoch, loss]...]``,
        ``epoch_seconds``, ``epoch_diagnostics``), ``model_file`` (the best-model file written,
        or None); with ``keep`` also ``trained_run``
        (:meth:`~recbole_derrd.trainer.SafeCheckpointMixin.trained_run`).
    """
    start = time.perf_counter()
    with config_values(config, trial_settings):
        resume = continuable_trial(model_file, config) if model_file is not None else None
        set_run_random_state(start_state, train_data)
        model = build_model(config, train_data.dataset, teacher=teacher, split=split)
        trainer = build_trainer(config, model)
        trainer.training_split = split
        if model_file is None:
            trainer.keeps_best_in_memory = keep
            trainer.resume_file = None  # a trial writes no file
        else:
            trainer.saved_model_file = model_file
            trainer.resume_file = resume_path(model_file)
            if resume is not None:
                trainer.resume_checkpoint(resume)
        earlier_seconds = sum(trainer.epoch_seconds)  # the epochs before an interruption
        score, result = trainer.fit(train_data, valid_data, verbose=False,
                                    saved=keep or model_file is not None, show_progress=False)
    written = None
    if model_file is not None and os.path.isfile(trainer.saved_model_file):
        written = trainer.saved_model_file  # None: it never improved on validation
    trial = {
        "best_valid_score": float(score),
        "best_valid_result": dict(result or {}),
        "epochs": len(trainer.epoch_seconds),
        "seconds": time.perf_counter() - start + earlier_seconds,
        "record": trainer.training_record(),
        "model_file": written,
    }
    if keep:
        if model_file is None:
            trial["trained_run"] = trainer.trained_run()
        elif written is not None:
            trial["trained_run"] = stored_trained_run(read_checkpoint(written), trial, trial["record"])
    return trial


def continuable_trial(model_file, config):
    """The resume file of the trial whose best-model file is ``model_file``, if an interrupted
    search left it unfinished and ``config`` (the trial's) continues it; else None, after
    removing that trial's leftover files (written under the journal's name, for this trial
    only), so that it trains again from its start."""
    resume_file = resume_path(model_file)
    if os.path.isfile(resume_file):
        try:
            read_resume_file(resume_file, config)
            getLogger().info(set_color("weight search", "yellow")
                             + f": continuing the interrupted trial {resume_file}")
            return resume_file
        except CheckpointError as error:
            getLogger().warning(f"weight search: the trial file {resume_file} is not continued "
                                f"({error}); this trial's files are removed and it trains again "
                                "from its start")
    for path in (resume_file, model_file):
        if os.path.isfile(path):
            os.remove(path)
    return None


def resumed_weights(config, resume, keys):
    """The settings of ``keys`` (and of the DERRD switches they decide) in the resume file
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


def resolve_automatic_weights(config, resume=None, saved=True):
    """Replace the ``auto`` loss weights of ``config`` by numbers: chosen by
    :func:`search_loss_weights`, or, for a resumed run, those of the run it continues. Logs the
    trials, the cost and the command-line fragment that reproduces the choice.

    Args:
        saved (bool): the run saves checkpoints; then the search keeps a journal of its
            finished trials (:mod:`recbole_derrd.pipeline.search_journal`), and an interrupted search
            started again takes them from it.

    Returns:
        tuple: ``(report, chosen_run, journal)``: the search's report (plain data), or None
        when no weight is ``auto``; the chosen trial's training, for the run to adopt
        (:meth:`~recbole_derrd.trainer.SafeCheckpointMixin.adopt_trial`) instead of training it
        again, or None (no search, a resumed run, or trials shorter than the run); the search's
        :class:`~recbole_derrd.pipeline.search_journal.SearchJournal`, for the run to remove once it
        has saved its model, or None.

    Raises:
        WeightSearchError: in a multi-process run (each process would search on its own).
    """
    keys = automatic_weight_keys(config)
    if not keys:
        return None, None, None
    logger = getLogger()
    if resume is not None:
        resumed = resumed_weights(config, str(resume), keys)
        if resumed is not None:
            settings, report = resumed
            for key, value in settings.items():
                config[key] = value
            logger.info(
                set_color("Loss weights of the resumed run", "green")
                + f" (no search): {command_line(settings)}"
            )
            return report, None, None
        return None, None, None  # the resume file's own checks report what is wrong with it
    if is_distributed(config):
        raise WeightSearchError(
            f"{', '.join(keys)}: '{AUTO}' is chosen by a weight search, which runs in a "
            "single process; run it once in one process (it logs and saves the chosen "
            "numbers), then give them to the multi-process run."
        )
    teacher_checkpoint = read_teacher_checkpoint(config) if config["teacher_checkpoint"] else None
    settings, report, chosen_run, journal = search_loss_weights(
        config, teacher_checkpoint=teacher_checkpoint, journal=saved)
    for key, value in settings.items():
        config[key] = value
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
    return report, chosen_run, journal
