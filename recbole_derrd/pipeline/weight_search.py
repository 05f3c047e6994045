r"""
recbole_derrd.pipeline.weight_search
####################################
Automatic choice of a distiller's loss weights: a weight set to ``auto`` (any of the
distiller's ``loss_weight_keys``, e.g. ``lambda_rrd: auto``) is chosen on the validation split
by trial runs before the run trains, and the run then trains with the chosen number.

- **Candidates**: ``weight_search_values[key]`` (a key missing there takes the default list of
  the distiller's YAML). A candidate of 0 trains without that term, so the search can turn off
  a distillation that does not help on validation: a distiller with ``term_switches`` (DERRD's
  ``use_de`` / ``use_rrd``) switches a term with weight 0 off rather than computing it with
  weight 0; were all its terms off, the first stays on with weight 0 (the student trains on its
  own loss alone; DERRD's RRD, the cheap term).
- **Order**: several ``auto`` weights are chosen one after the other (coordinate search, in the
  model's ``loss_weight_keys`` order: DERRD's ``lambda_rrd`` then ``lambda_de``), each with the
  weights not yet chosen at the plugin's defaults; then, if every list holds 0 and the rounds
  did not reach it, every weight at 0 (the student alone), so that it is always a candidate.
  Trials: at most the sum of the candidate counts, plus that one (a combination already
  trained is not trained again).
- **Trials**: the data, the split and the teacher are prepared once by the run
  (:func:`~recbole_derrd.pipeline.training.prepare_inputs`: an on-demand teacher is trained, or
  found in the cache; its top-N read or computed once) and handed to every trial; each trial is
  the run's own training function (:func:`~recbole_derrd.pipeline.training.train`) with the
  trial's settings: a fresh model, seeded as the run seeds it, starting from the same random
  state, trained for at most ``min(weight_search_epochs, epochs)`` epochs with early
  stopping after ``weight_search_stopping_step`` evaluations without improvement, scored by
  ``valid_metric`` on the validation split; the test split is never used.
  By default (both keys ``~``) a trial is as long as the run, with the run's patience: the
  choice compares converged runs, and the chosen trial is the run's own training (the run
  adopts its best model instead of training it again). Shorter
  trials are cheaper but biased: distillation speeds up the first epochs, so trials stopped
  long before convergence favour the strongest weight (on ml-100k and Last.fm, 30-epoch trials
  chose the largest weight offered, and on Last.fm a student worse than the student alone).
  Schedules that follow ``epochs`` (DE's annealing, up to 300 epochs) keep the full run's length, so a short
  trial is the start of the run it stands for.
- **Choice**: the best validation score (``valid_metric_bigger``), ties to the smaller weight
  (to the student alone in the last comparison).
- **Journal**: a run that saves checkpoints records each finished trial on disk, and each
  trial writes a best-model and a resume file as a run does
  (:mod:`recbole_derrd.pipeline.search_journal`); the same search started again after an interruption
  takes the finished trials from there, continues the interrupted one from its last epoch and
  trains the others.
- **Record** (:mod:`recbole_derrd.pipeline.loss_weights`): the chosen numbers replace ``auto``
  in the configuration (so the checkpoint's configuration holds them); the log shows every
  trial, the cost (trials, epochs, seconds) and the command-line fragment that reproduces the
  run without searching; the report is returned by
  :func:`~recbole_derrd.quick_start.run_recbole_derrd` (``weight_search``) and saved in its
  checkpoints. A resumed run takes the weights of the run it continues, without searching.
"""


import contextlib
import math
import os
import time
from logging import getLogger

from recbole.utils import set_color

from recbole_derrd.files.checkpoint import read_checkpoint, read_resume_file, resume_path, to_plain
from recbole_derrd.settings.defaults import plugin_default
from recbole_derrd.errors import CheckpointError, UserError
from recbole_derrd.pipeline.training import config_values, train
from recbole_derrd.pipeline.search_journal import SearchJournal, stored_trained_run
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

    A term whose searched weight is 0 is switched off (the distiller's ``term_switches``); if
    that would leave no term on, the first of them stays on with weight 0.

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


def trial_length(config):
    """``epochs`` and ``stopping_step`` of a trial: ``weight_search_epochs`` (at most the run's
    ``epochs``) and ``weight_search_stopping_step``, each ``~`` meaning the run's own."""
    epochs = config["weight_search_epochs"]
    stopping_step = config["weight_search_stopping_step"]
    return {
        "epochs": config["epochs"] if epochs is None else min(epochs, config["epochs"]),
        "stopping_step": config["stopping_step"] if stopping_step is None else stopping_step,
    }


class WeightSearch:
    """The trials of one search (module docstring: candidates, order, trials, choice).

    Args:
        inputs (RunInputs): the run's prepared data and teacher
            (:func:`~recbole_derrd.pipeline.training.prepare_inputs`).
        journal (SearchJournal): the finished trials on disk, or None.
    """

    def __init__(self, inputs, journal=None):
        config = inputs.config
        self.inputs, self.config, self.journal = inputs, config, journal
        self.model_class = config.model_class
        self.keys = automatic_weight_keys(config)
        self.bigger = config["valid_metric_bigger"]
        self.candidates = {key: candidate_values(config, key) for key in self.keys}
        self.weights = {key: plugin_default(config, key) for key in self.keys}  # those not yet chosen
        switches = getattr(self.model_class, "term_switches", {})
        self.switches_on = {switch: config[switch] for switch in switches.values()}
        self.trial_config = dict(self.model_class.schedule_settings(config), **trial_length(config))
        # A trial as long as the run, with the run's patience, is the run with those weights: the
        # chosen one is adopted by the run instead of being trained again (its best model is
        # kept: those of the current round and the current choice, no others)
        self.adoptable = (self.trial_config["epochs"] == config["epochs"]
                          and self.trial_config["stopping_step"] == config["stopping_step"])
        self.trials = []  # every trial listed, repeats included
        self.trained = {}  # settings signature -> the trial trained with them
        self.kept_runs = {}  # settings signature -> its training, for the run to adopt

    def settings(self, weights):
        return weight_settings(self.model_class, weights, self.switches_on)

    def signature(self, weights):
        return tuple(sorted(self.settings(weights).items()))

    def describe(self):
        """What the search will try, for the log."""
        keys, weights, trial = self.keys, self.weights, self.trial_config
        order = "; then ".join(
            f"{key} over {self.candidates[key]}"
            + (f" (from {', '.join(f'{other}={weights[other]}' for other in keys[i + 1:])})"
               if i + 1 < len(keys) else "")
            for i, key in enumerate(keys)
        )
        return (
            f"{order}. Trials of at most {trial['epochs']} epochs, patience "
            f"{trial['stopping_step']}, scored by {self.config['valid_metric']} on the validation "
            "split (the test split is not used). A candidate of 0 trains without that term: a "
            "distillation that does not help on validation is switched off, and with 0 in every "
            "list the student alone is a candidate, so distillation that hurts is not chosen."
        )

    def run(self):
        """Every round, then the student alone: the weights chosen (:attr:`weights`)."""
        for key in self.keys:
            value_scores = [(value, self.score(key, value, dict(self.weights, **{key: value})))
                            for value in self.candidates[key]]
            self.weights[key] = best_value(value_scores, self.bigger)
            self.kept_runs = {self.signature(self.weights): self.kept_runs.get(self.signature(self.weights))}
        # one weight at a time reaches every weight at 0 (the student alone) only if the
        # earlier rounds chose 0: tried at the end, so that it is always a candidate, ties
        # going to it
        student_alone = {key: 0 for key in self.keys}
        if (len(self.keys) > 1 and all(0 in self.candidates[key] for key in self.keys)
                and self.weights != student_alone):
            chosen_score = self.trained[self.signature(self.weights)]["best_valid_score"]
            alone_score = self.score(STUDENT_ALONE, 0, student_alone)
            if best_value([(0, alone_score), (1, chosen_score)], self.bigger) == 0:
                self.weights = student_alone

    def score(self, round_key, value, weights):
        """The best validation score with ``weights``: trained now (or taken from the journal),
        or repeated from an earlier trial of the same settings (listed again, not trained again)."""
        signature = self.signature(weights)
        if signature in self.trained:
            trial = dict(self.trained[signature], key=round_key, value=value, trained=False)
        else:
            trial, trained_run = self.finished_trial(self.settings(weights))
            # a trial that never improved on validation (diverged) has no best state to adopt
            self.kept_runs[signature] = trained_run if trained_run and trained_run["state"] else None
            trial.update(index=len(self.trained) + 1, key=round_key, value=value,
                         weights=dict(weights), trained=True)
            self.trained[signature] = trial
            getLogger().info(
                set_color(f"weight search trial {trial['index']}", "blue") + ": "
                + ", ".join(f"{name}={number}" for name, number in weights.items())
                + f": valid {self.config['valid_metric']} {trial['best_valid_score']:.4f} after "
                f"{trial['epochs']} epochs ({trial['seconds']:.1f}s"
                + (", from the journal)" if trial["from_journal"] else ")")
            )
        self.trials.append(trial)
        return trial["best_valid_score"]

    def finished_trial(self, settings):
        """``(trial, trained run)`` of the weight ``settings``: from the journal (finished by an
        interrupted search of these settings), or trained now (:func:`run_trial`)."""
        journal = self.journal
        journaled = journal.finished(settings) if journal is not None else None
        if journaled is not None:
            trained_run = journal.trained_run(settings) if self.adoptable else None
            return dict(journaled, from_journal=True), trained_run
        model_file = None if journal is None else journal.trial_model_file(settings)
        trial = run_trial(self.inputs, dict(self.trial_config, **settings), keep=self.adoptable,
                          model_file=model_file)
        trained_run = trial.pop("trained_run", None)
        record, written = trial.pop("record"), trial.pop("model_file")
        trial["from_journal"] = False
        if journal is not None:
            # finished: its resume file goes; its best model stays if the run may adopt it
            journal.record(settings, trial, record, written if self.adoptable else None)
            for leftover in [resume_path(model_file)] + ([] if self.adoptable else [model_file]):
                if os.path.isfile(leftover):
                    os.remove(leftover)
        return trial, trained_run

    def report(self):
        """The search's report, plain data (:func:`search_loss_weights`)."""
        settings = self.settings(self.weights)
        trained = self.trained.values()
        return to_plain({
            "chosen": dict(self.weights),
            "settings": settings,
            "command_line": command_line(settings),
            "trials": self.trials,
            "trial_count": len(self.trained),
            "epochs": sum(trial["epochs"] for trial in trained),
            "seconds": sum(trial["seconds"] for trial in trained),
            "journal_trials": sum(trial["from_journal"] for trial in trained),
            "preparation_seconds": self.inputs.seconds,
            "valid_metric": self.config["valid_metric"],
            "valid_metric_bigger": self.bigger,
            "trial_epochs": self.trial_config["epochs"],
            "trial_stopping_step": self.trial_config["stopping_step"],
            "chosen_trial_adopted": self.chosen_run() is not None,
        })

    def chosen_run(self):
        return self.kept_runs.get(self.signature(self.weights))


def search_loss_weights(inputs, journal=False):
    r"""Choose the ``auto`` loss weights of the run of ``inputs`` on the validation split
    (module docstring: candidates, order, trials, choice). The configuration is left as it was.

    Args:
        inputs (RunInputs): the run's data, split and teacher, prepared once
            (:func:`~recbole_derrd.pipeline.training.prepare_inputs`); at least one weight of
            ``inputs.config`` is ``auto``.
        journal (bool): keep a journal of the finished trials in ``checkpoint_dir``
            (:mod:`recbole_derrd.pipeline.search_journal`), and take the trials an interrupted
            search of the same settings finished from it instead of training them again.

    Returns:
        tuple: ``(settings, report, chosen_run, journal)``: the configuration values of the
        chosen weights (and the terms they switch off); the search's report: ``chosen``
        (weights), ``settings``, ``command_line``, ``trials`` (each: ``index``, ``key``: the
        weight whose round it belongs to, or :data:`STUDENT_ALONE`; ``value``, ``weights``,
        ``best_valid_score``, ``best_valid_result``, ``epochs``, ``seconds``, ``trained``: False
        for a combination trained before, whose result it repeats), ``trial_count``, ``epochs``,
        ``seconds`` (the trials, those taken from the journal included), ``journal_trials`` (how
        many were), ``preparation_seconds`` (data and teacher), ``valid_metric``,
        ``valid_metric_bigger``, ``trial_epochs``, ``trial_stopping_step``,
        ``chosen_trial_adopted``; the chosen trial's training
        (:meth:`~recbole_derrd.trainer.SafeCheckpointMixin.trained_run`) for the run to adopt,
        or None when trials are shorter than the run; and the
        :class:`~recbole_derrd.pipeline.search_journal.SearchJournal` (None without ``journal``),
        for the run to remove once it has saved its model.
    """
    config = inputs.config
    search = WeightSearch(inputs)
    getLogger().info(set_color("Weight search", "green") + ": " + search.describe())
    journal_context = contextlib.nullcontext()
    if journal:
        teacher_path = inputs.teacher.path if inputs.teacher is not None else None
        journal_context = SearchJournal.opened(config, inputs.split.fingerprint, search.trial_config,
                                               teacher_path)
    with journal_context as search.journal:  # its lock held while the trials train
        if search.journal is not None and search.journal.trials:
            getLogger().info(
                set_color("Weight search journal", "green") + f": {search.journal.path}: "
                f"{len(search.journal.trials)} trial(s) of an interrupted search of these "
                "settings finished; taken from it, not trained again"
            )
        search.run()
    return search.settings(search.weights), search.report(), search.chosen_run(), search.journal


def run_trial(inputs, trial_settings, keep=False, model_file=None):
    """Train one fresh model with ``trial_settings`` (the run's training function,
    :func:`~recbole_derrd.pipeline.training.train`).

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
    resume = None
    if model_file is not None:
        with config_values(inputs.config, trial_settings):  # the trial's settings decide
            resume = continuable_trial(model_file, inputs.config)
    training = train(inputs, trial_settings, saved=keep or model_file is not None, resume=resume,
                     model_file=model_file, resume_file=model_file is not None,
                     keep_in_memory=keep and model_file is None, verbose=False)
    trainer = training.trainer
    written = None
    if model_file is not None and os.path.isfile(trainer.saved_model_file):
        written = trainer.saved_model_file  # None: it never improved on validation
    trial = {
        "best_valid_score": float(training.best_valid_score),
        "best_valid_result": dict(training.best_valid_result or {}),
        "epochs": len(trainer.epoch_seconds),
        "seconds": time.perf_counter() - start + training.resumed_seconds,
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
