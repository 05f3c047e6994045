"""Automatic loss weights (``lambda_rrd: auto``...): the search picks the best validation score
among its trials, prepares the teacher and its top-N once for all of them and the run, and the
run it chooses is reproduced, without searching, by the numbers it logs and saves."""

import math
import os
import sys

import pytest
import torch

import recbole_derrd
import recbole_derrd.model.distiller
import recbole_derrd.pipeline.training
import recbole_derrd.trainer
import recbole_derrd.pipeline.loss_weights
import recbole_derrd.pipeline.weight_search
from recbole_derrd import CD, DERRD, HTD, RD, Config, UnKD, objective_function, run_recbole_derrd
from recbole_derrd.files.checkpoint import plain_config, save_checkpoint
from recbole_derrd.config import config_from_plain
from recbole_derrd.errors import CheckpointError
from recbole_derrd.pipeline.loss_weights import check_automatic_weights
from recbole_derrd.pipeline.training import RunInputs, prepare_inputs
from recbole_derrd.settings.registry import loss_weight_keys, plugin_model_names
from recbole_derrd.settings.validation import ConfigValueError
from recbole_derrd.pipeline.weight_search import (
    WeightSearchError,
    best_value,
    weight_settings,
)

from conftest import FAST

#: Two weights searched over two candidates each, trials as long as the run (2 epochs): the
#: coordinate search trains 3 or 4 combinations (one repeats) and the chosen trial is the very
#: run that follows.
AUTO_SETTINGS = dict(
    FAST,
    epochs=2,
    teacher_config={"epochs": 1},
    lambda_rrd="auto",
    lambda_de="auto",
    weight_search_values={"lambda_rrd": [0, 0.01], "lambda_de": [0, 0.01]},
    # RecBole's 2,048-interaction batches: on this seed the search then keeps RRD on, so the
    # run reads the top-N too (with FAST's 8,192 it chooses DE alone, which needs none)
    train_batch_size=2048,
)


# ----- the choice -----

def test_best_value_is_the_best_validation_score_ties_to_the_smaller_weight():
    scores = [(0, 0.30), (0.001, 0.35), (0.01, 0.35), (0.1, 0.20)]
    assert best_value(scores, bigger=True) == 0.001  # tie of 0.001 and 0.01: the smaller
    assert best_value(scores, bigger=False) == 0.1
    assert best_value([(0.1, 0.2), (0, 0.2)], bigger=True) == 0
    # a diverged trial (nan) is never chosen, whichever direction is better
    assert best_value([(0, 0.1), (0.01, math.nan)], bigger=True) == 0
    assert best_value([(0, 0.1), (0.01, math.nan)], bigger=False) == 0
    # a trial never validated keeps RecBole's initial score (-inf when bigger is better)
    assert best_value([(0, -math.inf), (0.01, 0.05)], bigger=True) == 0.01


def test_a_zero_weight_switches_its_derrd_term_off():
    both_on = {"use_rrd": True, "use_de": True}
    assert weight_settings(DERRD, {"lambda_rrd": 0.01, "lambda_de": 0.01}, both_on) == {
        "lambda_rrd": 0.01, "lambda_de": 0.01}
    assert weight_settings(DERRD, {"lambda_rrd": 0.01, "lambda_de": 0}, both_on) == {
        "lambda_rrd": 0.01, "lambda_de": 0, "use_de": False}
    # the other term, not searched, stays on: only the searched one goes
    assert weight_settings(DERRD, {"lambda_rrd": 0}, both_on) == {"lambda_rrd": 0, "use_rrd": False}
    # no term left: RRD stays on with weight 0 (the student on its own loss alone)
    assert weight_settings(DERRD, {"lambda_rrd": 0, "lambda_de": 0}, both_on) == {
        "lambda_rrd": 0, "lambda_de": 0, "use_de": False}
    assert weight_settings(DERRD, {"lambda_rrd": 0}, {"use_rrd": True, "use_de": False}) == {
        "lambda_rrd": 0}
    # RD and CD have one term: a weight of 0 is their student alone
    assert weight_settings(RD, {"lambda_rd": 0}, {}) == {"lambda_rd": 0}


def test_a_derrd_run_with_every_weight_zero_is_the_student_alone(workdir, fast_config, monkeypatch):
    """What the search runs when it chooses every weight 0: RRD stays on with weight 0, is
    not computed (no resampling, a zero loss term), and the run is the student alone's."""
    resamples = []
    original = DERRD.resample
    monkeypatch.setattr(DERRD, "resample", lambda self, epoch: resamples.append(epoch) or original(self, epoch))
    zero = run_recbole_derrd("DERRD", "ml-100k", config_dict=fast_config(
        epochs=2, use_de=False, lambda_rrd=0, lambda_de=0), saved=False)
    alone = run_recbole_derrd("BPR", "ml-100k", config_dict=fast_config(epochs=2), saved=False)
    assert resamples == []
    # the zero term adds nothing, epoch by epoch (the epoch's sum runs over parts: rounding)
    assert zero["train_loss"] == pytest.approx(alone["train_loss"], rel=1e-6)
    assert zero["best_valid_result"] == alone["best_valid_result"]
    assert zero["test_result"] == alone["test_result"]


def search_without_training(monkeypatch, config, scored_trial):
    """:func:`search_loss_weights` with ``scored_trial`` in place of each trial's training
    (and no data or teacher prepared)."""
    module = recbole_derrd.pipeline.weight_search
    monkeypatch.setattr(module, "run_trial", scored_trial)
    inputs = RunInputs(config, None, None, None, None, split=None, teacher=None, start_state=None)
    return module.search_loss_weights(inputs)


@pytest.mark.parametrize("alone_score, chosen", [
    (0.36, {"lambda_rrd": 0, "lambda_de": 0}),
    (0.35, {"lambda_rrd": 0, "lambda_de": 0}),  # a tie goes to the student alone
    (0.20, {"lambda_rrd": 0.01, "lambda_de": 0.01}),
])
def test_one_weight_at_a_time_then_the_student_alone(workdir, fast_config, monkeypatch,
                                                     alone_score, chosen):
    """The search's order and choices, on scores given by a table instead of training."""
    config = Config("DERRD", "ml-100k", config_dict=fast_config(
        lambda_rrd="auto", lambda_de="auto", epochs=7,
        weight_search_values={"lambda_rrd": [0.1, 0, 0.01], "lambda_de": [0, 0.01]}))
    table = {(0, 0.01): 0.30, (0.01, 0.01): 0.35, (0.1, 0.01): 0.35, (0.01, 0): 0.32,
             (0, 0): alone_score}
    trained = []

    def scored_trial(inputs, settings, keep, model_file):
        assert model_file is None  # no journal: no trial file
        # by default a trial is as long as the run, with its patience: its model is kept for
        # the run to adopt
        assert settings["epochs"] == 7 and settings["stopping_step"] == 10 and keep is True
        assert settings["de_anneal_epochs"] == 7  # the run's schedule, not the trial's length
        weights = (settings["lambda_rrd"], settings["lambda_de"])
        # a weight of 0 switches its DERRD term off, unless no term would be left (RRD stays)
        assert settings.get("use_de", True) == (weights[1] != 0)
        assert settings.get("use_rrd", True) == (weights != (0, 0.01))
        trained.append(weights)
        return {"best_valid_score": table[weights], "best_valid_result": {}, "epochs": 1,
                "seconds": 0.1, "record": {}, "model_file": None, "trained_run": {"state": weights}}

    settings, report, chosen_run, journal = search_without_training(monkeypatch, config, scored_trial)
    assert journal is None  # a search that keeps no journal (the run saves nothing)
    # lambda_rrd over its sorted candidates with lambda_de at its default (0.01), ties to the
    # smaller; then lambda_de with lambda_rrd at 0.01 ((0.01, 0.01) repeated, not trained);
    # then the student alone
    assert trained == [(0, 0.01), (0.01, 0.01), (0.1, 0.01), (0.01, 0), (0, 0)]
    assert [trial["trained"] for trial in report["trials"]] == [True, True, True, True, False, True]
    assert report["trials"][-1]["key"] == "student alone"
    assert report["chosen"] == chosen and report["trial_count"] == 5
    # the run adopts the chosen trial's training (not kept in the plain report)
    assert chosen_run == {"state": (chosen["lambda_rrd"], chosen["lambda_de"])}
    assert report["chosen_trial_adopted"] is True
    assert all("trained_run" not in trial for trial in report["trials"])
    if chosen["lambda_rrd"] == 0:
        assert settings == {"lambda_rrd": 0, "lambda_de": 0, "use_de": False}
        assert report["command_line"] == "--lambda_rrd=0 --lambda_de=0 --use_de=False"
    else:
        assert settings == chosen
    # the configuration is left as it was
    assert (config["lambda_rrd"], config["epochs"], config["stopping_step"]) == ("auto", 7, 10)
    assert config["de_anneal_epochs"] is None


@pytest.mark.parametrize("overrides, length", [
    ({}, {"epochs": 7, "stopping_step": 10}),  # the run's own
    ({"weight_search_epochs": 30, "weight_search_stopping_step": 5}, {"epochs": 7, "stopping_step": 5}),
    ({"weight_search_epochs": 3}, {"epochs": 3, "stopping_step": 10}),
])
def test_a_trial_is_as_long_as_the_run_unless_shortened(workdir, fast_config, overrides, length):
    config = Config("DERRD", "ml-100k", config_dict=fast_config(
        lambda_rrd="auto", epochs=7, stopping_step=10, **overrides))
    assert recbole_derrd.pipeline.weight_search.trial_length(config) == length


def test_shortened_trials_are_not_the_run_so_the_run_trains_again(workdir, fast_config, monkeypatch):
    config = Config("DERRD", "ml-100k", config_dict=fast_config(
        lambda_rrd="auto", epochs=7, weight_search_epochs=3,
        weight_search_values={"lambda_rrd": [0, 0.01]}))
    kept = []

    def scored_trial(inputs, settings, keep, model_file):
        kept.append(keep)
        return {"best_valid_score": settings["lambda_rrd"], "best_valid_result": {}, "epochs": 3,
                "seconds": 0.1, "record": {}, "model_file": None}

    settings, report, chosen_run, journal = search_without_training(monkeypatch, config, scored_trial)
    assert journal is None  # a search that keeps no journal (the run saves nothing)
    assert settings == {"lambda_rrd": 0.01} and kept == [False, False]
    assert chosen_run is None and report["chosen_trial_adopted"] is False


def test_every_distillers_weights_are_searchable():
    assert {key for model in (DERRD, RD, CD, UnKD, HTD) for key in model.loss_weight_keys} == set(loss_weight_keys())


# ----- a real search -----

@pytest.fixture(scope="module")
def auto_run(tmp_path_factory):
    """One DERRD run with both weights ``auto``, in a fresh working directory and
    checkpoint_dir (its teacher trained by it), counting teacher trainings and top-N
    computations. Returns ``(config_dict, result, counts)``."""
    directory = tmp_path_factory.mktemp("auto_run")
    counts = {"teacher trainings": 0, "top-N computed": 0, "top-N looked up": 0, "trials adopted": 0}

    def counting(name, function):
        def counted(*args, **kwargs):
            counts[name] += 1
            return function(*args, **kwargs)
        return counted

    config_dict = dict(AUTO_SETTINGS, checkpoint_dir=str(directory / "saved"))
    cwd = os.getcwd()
    os.chdir(directory)
    argv, sys.argv = sys.argv, ["pytest"]
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(recbole_derrd.pipeline.training, "train_teacher",
                          counting("teacher trainings", recbole_derrd.pipeline.training.train_teacher))
            patch.setattr(recbole_derrd.model.distiller, "teacher_topn",
                          counting("top-N computed", recbole_derrd.model.distiller.teacher_topn))
            patch.setattr(recbole_derrd.model.distiller, "cached_teacher_topn",
                          counting("top-N looked up", recbole_derrd.model.distiller.cached_teacher_topn))
            patch.setattr(recbole_derrd.trainer.SafeCheckpointMixin, "adopt_trial",
                          counting("trials adopted", recbole_derrd.trainer.SafeCheckpointMixin.adopt_trial))
            result = run_recbole_derrd("DERRD", "ml-100k", config_dict=dict(config_dict))
        return config_dict, result, counts
    finally:
        os.chdir(cwd)
        sys.argv = argv


def best_by_hand(trials):
    """The value of the best score among ``trials`` (MRR: bigger is better), ties to the
    smaller value."""
    best = max(trial["best_valid_score"] for trial in trials)
    return min(trial["value"] for trial in trials if trial["best_valid_score"] == best)


def test_the_search_chooses_the_best_validation_score_of_its_trials(auto_run):
    _, result, _ = auto_run
    report = result["weight_search"]
    trials = report["trials"]
    assert report["valid_metric_bigger"] is True
    rrd_round = [trial for trial in trials if trial["key"] == "lambda_rrd"]
    de_round = [trial for trial in trials if trial["key"] == "lambda_de"]
    assert [trial["value"] for trial in rrd_round] == [trial["value"] for trial in de_round] == [0, 0.01]
    # lambda_rrd first, lambda_de at its default; then lambda_de, lambda_rrd at its choice
    assert all(trial["weights"]["lambda_de"] == 0.01 for trial in rrd_round)
    rrd_choice = best_by_hand(rrd_round)
    assert all(trial["weights"]["lambda_rrd"] == rrd_choice for trial in de_round)
    # the choice is the best validation score of all trials (its own ties to the smaller weight)
    best = max(trial["best_valid_score"] for trial in trials)
    chosen_trial = next(trial for trial in trials if trial["weights"] == report["chosen"])
    assert chosen_trial["best_valid_score"] == best
    assert report["chosen"]["lambda_de"] in (best_by_hand(de_round), 0)
    # the student alone (both 0) is a candidate: reached by the rounds if lambda_rrd chose 0,
    # else tried last; (rrd_choice, 0.01) is in both rounds: trained once, its result repeated
    assert any(trial["weights"] == {"lambda_rrd": 0, "lambda_de": 0} for trial in trials)
    assert report["trial_count"] == sum(trial["trained"] for trial in trials) == 3 + (rrd_choice != 0)
    # the cost: every trained trial's epochs (at most min(weight_search_epochs, epochs)) and time
    assert report["trial_epochs"] == 2
    assert report["epochs"] == sum(trial["epochs"] for trial in trials if trial["trained"])
    assert all(1 <= trial["epochs"] <= 2 and trial["seconds"] > 0 for trial in trials)
    assert report["seconds"] == pytest.approx(sum(t["seconds"] for t in trials if t["trained"]))
    # a trial as long as the run is that run: the run adopts it (its best model and its
    # training record) instead of training it again
    assert report["chosen_trial_adopted"] is True
    assert chosen_trial["best_valid_score"] == result["best_valid_score"]
    assert chosen_trial["best_valid_result"] == dict(result["best_valid_result"])
    assert len(result["train_epoch_seconds"]) == chosen_trial["epochs"]
    assert f"--lambda_rrd={report['chosen']['lambda_rrd']}" in report["command_line"]


def test_the_teacher_and_its_top_n_are_prepared_once(auto_run):
    _, result, counts = auto_run
    # 3 or 4 trials and the run: one teacher training, one top-N computation and one look-up of
    # the cache: the search and the run, which adopts its chosen trial (RRD on: the run needs
    # the top-N too), share one teacher object, which keeps it
    assert result["weight_search"]["chosen"]["lambda_rrd"] != 0
    assert counts == {"teacher trainings": 1, "top-N computed": 1, "top-N looked up": 1,
                      "trials adopted": 1}


def test_the_checkpoint_holds_the_chosen_numbers_and_the_report(auto_run):
    _, result, _ = auto_run
    report = result["weight_search"]
    checkpoint = torch.load(result["checkpoint"], weights_only=True)
    stored = checkpoint["config"]
    for key, value in report["settings"].items():
        assert stored[key] == value
    assert not isinstance(stored["lambda_rrd"], str) and not isinstance(stored["lambda_de"], str)
    assert checkpoint["weight_search"] == report
    # the adopted trial finished: no resume file; the checkpoint is this run's own
    assert result["resume_file"] is None
    assert checkpoint["state_dict"].keys() and checkpoint["epoch"] < len(result["train_epoch_seconds"])
    # the stored configuration rebuilds as it is (numbers), without searching
    rebuilt = config_from_plain(stored)
    assert all(rebuilt[key] == value for key, value in report["settings"].items())


def test_the_chosen_numbers_reproduce_the_run_without_searching(auto_run, monkeypatch):
    config_dict, result, _ = auto_run
    settings = result["weight_search"]["settings"]
    explicit = dict(config_dict, **settings)

    def must_not_search(*args, **kwargs):
        raise AssertionError("no weight is auto: nothing to search")

    monkeypatch.setattr(recbole_derrd.pipeline.loss_weights, "search_loss_weights", must_not_search)
    monkeypatch.chdir(os.path.dirname(config_dict["checkpoint_dir"]))
    again = run_recbole_derrd("DERRD", "ml-100k", config_dict=explicit)
    assert again["weight_search"] is None
    assert again["best_valid_score"] == result["best_valid_score"]
    assert dict(again["test_result"]) == dict(result["test_result"])


def test_a_run_that_saves_nothing_trains_its_chosen_weights_again(workdir, fast_config, monkeypatch):
    """Without a saved best model a RecBole run tests its last epoch: such a run does not
    adopt the trial's best epoch, it trains the chosen weights (the same result on validation)."""
    def must_not_adopt(*args, **kwargs):
        raise AssertionError("a run that saves nothing adopted its trial")

    monkeypatch.setattr(recbole_derrd.trainer.SafeCheckpointMixin, "adopt_trial", must_not_adopt)
    result = run_recbole_derrd("DERRD", "ml-100k", config_dict=fast_config(
        epochs=2, use_de=False, lambda_rrd="auto", weight_search_values={"lambda_rrd": [0, 0.01]},
        compare_student_alone=False), saved=False)
    report = result["weight_search"]
    assert report["chosen_trial_adopted"] is False and len(result["train_epoch_seconds"]) >= 1
    chosen = next(trial for trial in report["trials"] if trial["weights"] == report["chosen"])
    assert result["best_valid_score"] == chosen["best_valid_score"]


def test_a_resumed_run_takes_the_weights_of_the_run_it_continues(workdir, fast_config, monkeypatch):
    config = Config("DERRD", "ml-100k", config_dict=fast_config(lambda_rrd="auto", lambda_de="auto"))
    report = {"chosen": {"lambda_rrd": 0.01, "lambda_de": 0}, "command_line": "--lambda_rrd=0.01"}
    stored = dict(plain_config(config), lambda_rrd=0.01, lambda_de=0, use_de=False)
    resume_file = str(workdir / "DERRD-x.resume.pth")
    save_checkpoint({"kind": "resume", "config": stored, "state_dict": {}, "weight_search": report},
                    resume_file)

    def must_not_search(*args, **kwargs):
        raise AssertionError("a resumed run does not search again")

    monkeypatch.setattr(recbole_derrd.pipeline.loss_weights, "search_loss_weights", must_not_search)
    choice = check_automatic_weights(config, resume=str(workdir / "DERRD-x.pth"))
    assert choice.journal is None
    assert choice.chosen_run is None  # the resumed run trains on from its file
    assert (config["lambda_rrd"], config["lambda_de"], config["use_de"]) == (0.01, 0, False)
    assert choice.report["chosen"] == report["chosen"] and choice.report["resumed_from"] == resume_file


# ----- an interrupted search continues from its journal -----

#: One weight over two candidates, trials as long as the run (the chosen trial is adopted),
#: the session's teacher; each run in its own checkpoint_dir.
JOURNAL_SETTINGS = dict(FAST, epochs=2, use_de=False, lambda_rrd="auto",
                        weight_search_values={"lambda_rrd": [0, 0.01]})


def journal_files(directory):
    """The journal and its trials' files (the empty lock file beside them aside)."""
    return sorted(name for name in os.listdir(directory) if "weight-search" in name and name.endswith(".pth"))


@pytest.fixture(scope="module")
def uninterrupted_search(teacher_checkpoint, tmp_path_factory):
    """The reference: the search and its run without interruption."""
    directory = tmp_path_factory.mktemp("uninterrupted_search")
    config_dict = dict(JOURNAL_SETTINGS, checkpoint_dir=str(directory / "saved"),
                       teacher_checkpoint=teacher_checkpoint)
    cwd = os.getcwd()
    os.chdir(directory)
    try:
        result = run_recbole_derrd("DERRD", "ml-100k", config_dict=dict(config_dict))
    finally:
        os.chdir(cwd)
    # the run saved its model: its journal is gone
    assert journal_files(config_dict["checkpoint_dir"]) == []
    return result


class Interrupted(Exception):
    """The process stopping (a session ending, a kill) in the middle of a search."""


@pytest.mark.parametrize("stop_at", ["second trial's start", "second trial's second epoch", "adoption"])
def test_an_interrupted_search_continues_from_its_journal(
        workdir, teacher_checkpoint, uninterrupted_search, monkeypatch, stop_at):
    """Stopped at the start of its second trial, the search started again trains only that
    trial; stopped in that trial's second epoch, it continues the trial from that epoch (its
    resume file); stopped after both trials (before the run adopted its choice), it trains
    nothing and adopts the chosen trial from its file. Each time the run ends as the
    uninterrupted one: the same trials, choice, best model and test result; then the journal
    and the trials' files are removed."""
    from recbole.trainer import Trainer

    config_dict = dict(JOURNAL_SETTINGS, checkpoint_dir=str(workdir / "saved"),
                       teacher_checkpoint=teacher_checkpoint)
    module = recbole_derrd.pipeline.weight_search
    real_trial, real_epoch = module.run_trial, Trainer._train_epoch
    trials, epochs = [], []

    def counted_trial(*args, **kwargs):
        trials.append(args[1]["lambda_rrd"])
        if stop_at == "second trial's start" and len(trials) == 2:
            raise Interrupted
        return real_trial(*args, **kwargs)

    def counted_epoch(self, *args, **kwargs):
        epochs.append(args[1])  # epoch_idx; the resume file of its start is written by now
        if stop_at == "second trial's second epoch" and len(trials) == 2 and args[1] == 1:
            raise Interrupted
        return real_epoch(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_epoch", counted_epoch)
    with monkeypatch.context() as patch:
        patch.setattr(module, "run_trial", counted_trial)
        if stop_at == "adoption":
            def stopped(*args, **kwargs):
                raise Interrupted
            patch.setattr(recbole_derrd.trainer.SafeCheckpointMixin, "adopt_trial", stopped)
        with pytest.raises(Interrupted):
            run_recbole_derrd("DERRD", "ml-100k", config_dict=dict(config_dict))
    finished = 2 if stop_at == "adoption" else 1
    # the journal and a best-model file per finished trial (each as long as the run:
    # adoptable); the interrupted trial's best model and resume file
    files = journal_files(config_dict["checkpoint_dir"])
    assert len(files) == 1 + finished + 2 * (stop_at == "second trial's second epoch")
    journal = torch.load(os.path.join(config_dict["checkpoint_dir"], files[0]), weights_only=True)
    assert journal["kind"] == "weight-search-journal" and len(journal["trials"]) == finished

    trials.clear()
    epochs.clear()
    monkeypatch.setattr(module, "run_trial", counted_trial)
    result = run_recbole_derrd("DERRD", "ml-100k", config_dict=dict(config_dict))
    assert trials == {"second trial's start": [0.01], "second trial's second epoch": [0.01],
                      "adoption": []}[stop_at]
    assert epochs == {"second trial's start": [0, 1], "second trial's second epoch": [1],
                      "adoption": []}[stop_at]
    report, reference = result["weight_search"], uninterrupted_search["weight_search"]
    assert report["journal_trials"] == finished and reference["journal_trials"] == 0
    assert [trial["from_journal"] for trial in report["trials"]] == [True, stop_at == "adoption"]
    # the same trials, scores and choice as without the interruption
    for key in ("chosen", "trial_count", "epochs"):
        assert report[key] == reference[key]
    assert ([trial["best_valid_score"] for trial in report["trials"]]
            == [trial["best_valid_score"] for trial in reference["trials"]])
    assert report["chosen_trial_adopted"] is True
    assert result["best_valid_score"] == uninterrupted_search["best_valid_score"]
    assert dict(result["test_result"]) == dict(uninterrupted_search["test_result"])
    assert len(result["train_epoch_seconds"]) == len(uninterrupted_search["train_epoch_seconds"])
    # the adopted model (from a trial's file) is the reference's
    saved = torch.load(result["checkpoint"], weights_only=True)
    expected = torch.load(uninterrupted_search["checkpoint"], weights_only=True)
    assert saved["epoch"] == expected["epoch"]
    for name, tensor in expected["state_dict"].items():
        assert torch.equal(saved["state_dict"][name], tensor), name
    # the run saved its model: the journal and the trials' files are removed
    assert journal_files(config_dict["checkpoint_dir"]) == []


def test_shortened_trials_keep_their_results_not_their_models(workdir, teacher_checkpoint):
    """Trials shorter than the run are never adopted: the journal keeps their results, and
    neither their best models nor their resume files stay on disk."""
    checkpoint_dir = workdir / "saved"
    config = Config("DERRD", "ml-100k", config_dict=dict(
        JOURNAL_SETTINGS, weight_search_epochs=1, checkpoint_dir=str(checkpoint_dir),
        teacher_checkpoint=teacher_checkpoint))
    settings, report, chosen_run, journal = recbole_derrd.pipeline.weight_search.search_loss_weights(
        prepare_inputs(config), journal=True)
    assert chosen_run is None and report["trial_count"] == 2
    assert journal_files(checkpoint_dir) == [os.path.basename(journal.path)]
    stored = torch.load(journal.path, weights_only=True)
    assert [entry["model_file"] for entry in stored["trials"].values()] == [None, None]
    assert [entry["result"]["epochs"] for entry in stored["trials"].values()] == [1, 1]
    journal.remove()
    assert journal_files(checkpoint_dir) == []


def test_a_journal_belongs_to_one_search(workdir, fast_config):
    """Another seed, candidate list or trial length is another search (another file name); a
    file by the journal's name that is not its journal is refused and left untouched."""
    from recbole_derrd.pipeline.search_journal import SearchJournal, journal_path, journal_identity

    def path(split="split-a", **overrides):
        config = Config("DERRD", "ml-100k", config_dict=fast_config(lambda_rrd="auto", **overrides))
        return journal_path(config, journal_identity(config, split, {"epochs": 3}))

    base = path()
    # not named as the model's runs are ("DERRD-..."), which interrupted runs are looked up by
    assert os.path.basename(base).startswith("weight-search-DERRD-ml-100k-")
    assert base == path()
    assert len({base, path(seed=7), path(weight_search_values={"lambda_rrd": [0, 0.1]}),
                path(weight_search_epochs=2), path(split="split-b"), path(lambda_de=0.1)}) == 6
    # the same name, other contents: refused before any trial, the file kept
    config = Config("DERRD", "ml-100k", config_dict=fast_config(lambda_rrd="auto"))
    os.makedirs(os.path.dirname(base), exist_ok=True)
    save_checkpoint({"kind": "weight-search-journal", "identity": {"other": 1}, "trials": {}}, base)
    before = open(base, "rb").read()
    with pytest.raises(CheckpointError, match="not the journal of this weight search"):
        with SearchJournal.opened(config, "split-a", {"epochs": 3}):
            pass
    assert open(base, "rb").read() == before
    # its own identity, but a trial file named outside its folder: refused, nothing read
    identity = journal_identity(config, "split-a", {"epochs": 3})
    save_checkpoint({"kind": "weight-search-journal", "identity": identity, "trials": {
        "lambda_rrd=0.01": {"result": {}, "record": {}, "model_file": "../elsewhere.pth"}}}, base)
    with pytest.raises(CheckpointError, match="not one of its own"):
        with SearchJournal.opened(config, "split-a", {"epochs": 3}):
            pass
    os.remove(base)


def test_a_run_that_saves_nothing_keeps_no_journal(workdir, teacher_checkpoint, monkeypatch):
    from recbole_derrd.pipeline.search_journal import SearchJournal

    def must_not_open(*args, **kwargs):
        raise AssertionError("a run that saves nothing opened a journal")

    monkeypatch.setattr(SearchJournal, "opened", must_not_open)
    checkpoint_dir = workdir / "saved"
    run_recbole_derrd("DERRD", "ml-100k", config_dict=dict(
        JOURNAL_SETTINGS, checkpoint_dir=str(checkpoint_dir), teacher_checkpoint=teacher_checkpoint),
        saved=False)
    assert not checkpoint_dir.exists() or journal_files(checkpoint_dir) == []


# ----- refused settings -----

@pytest.mark.parametrize("overrides, message", [
    ({"lambda_rrd": "atuo"}, "lambda_rrd must be a number >= 0, or 'auto'"),
    ({"lambda_de": "Auto"}, "lambda_de must be a number >= 0, or 'auto'"),
    ({"lambda_rrd": -0.1}, "lambda_rrd must be at least 0"),
    ({"lambda_de": "auto", "use_de": False}, "lambda_de: 'auto' chooses the weight of a term that use_de: False"),
    ({"weight_search_values": {"lambda_rrd": [0, -0.01]}}, "lambda_rrd must be a non-empty list of numbers >= 0"),
    ({"weight_search_values": {"lambda_rrd": []}}, "lambda_rrd must be a non-empty list"),
    ({"weight_search_values": {"lambda_rrd": 0.01}}, "lambda_rrd must be a non-empty list"),
    ({"weight_search_values": {"lamda_rrd": [0, 0.01]}}, "unknown loss weight 'lamda_rrd'"),
    ({"weight_search_values": [0, 0.01]}, "weight_search_values must be a dict"),
    ({"weight_search_epochs": 0}, "weight_search_epochs must be at least 1"),
    ({"weight_search_stopping_step": 0}, "weight_search_stopping_step must be at least 1"),
    ({"lambda_rrd": "auto", "eval_step": 0}, "eval_step 0 turns validation off"),
])
def test_bad_search_settings_are_refused_when_the_configuration_is_built(workdir, fast_config,
                                                                          overrides, message):
    with pytest.raises(ConfigValueError) as error:
        Config("DERRD", "ml-100k", config_dict=fast_config(**overrides))
    assert any(message in problem for problem in error.value.problems), error.value.problems


@pytest.mark.parametrize("model, key, candidates", [
    ("DERRD", "lambda_rrd", [0, 0.001, 0.01, 0.1]), ("DERRD", "lambda_de", [0, 0.001, 0.01, 0.1]),
    ("RD", "lambda_rd", [0, 0.01, 0.1, 1]), ("CD", "lambda_cd", [0, 0.01, 0.1, 1]),
    ("UnKD", "lambda_unkd", [0, 0.01, 0.1, 1]), ("HTD", "lambda_htd", [0, 1, 10, 100])])
def test_every_distillers_weight_accepts_auto(workdir, fast_config, model, key, candidates):
    assert model in plugin_model_names() and key in loss_weight_keys()
    assert key in getattr(recbole_derrd, model).loss_weight_keys
    config = Config(model, "ml-100k", config_dict=fast_config(**{key: "auto"}))
    assert config[key] == "auto"
    assert config["weight_search_values"][key] == candidates  # the default candidates, 0 first


def test_auto_is_refused_where_no_search_runs(workdir, fast_config):
    with pytest.raises(WeightSearchError, match="hyperparameter tuning"):
        objective_function(config_dict=fast_config(model="DERRD", dataset="ml-100k", lambda_rrd="auto"))
    config = Config("DERRD", "ml-100k", config_dict=fast_config(lambda_rrd="auto"))
    config["single_spec"] = False  # one process of a multi-process run
    with pytest.raises(WeightSearchError, match="single process"):
        check_automatic_weights(config)
