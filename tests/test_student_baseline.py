"""Issue 15: the student alone in every report. A distillation run also trains (or reuses, cached
like the teacher) the same student without a teacher, shows it in its final table, and warns
when the distilled student is the worse of the two on validation; the distilled run itself is
untouched by it. Issue 38: the student alone trains the distilled student's objective less the
distillation terms, whatever the loss reduction."""

import glob
import os
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import recbole_derrd.quick_start
import recbole_derrd.pipeline.student_alone
from recbole_derrd import Config, run_recbole_derrd
from recbole_derrd.files.checkpoint import read_checkpoint
import recbole_derrd.pipeline.training
from recbole_derrd.pipeline.student_alone import prepare_student_alone, student_alone_config, student_alone_path
from recbole_derrd.settings.validation import ConfigValueError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The paper's training setting (sum reduction, weight decay 1e-3).
PAPER = os.path.join(REPO, "properties", "experiments", "paper.yaml")
#: Fast settings of RD (as in test_config_properties.py).
FAST_RD = {"rd_topk": 5, "rd_rank_samples": 10}


@pytest.fixture
def compared(workdir, fast_config, teacher_checkpoint):
    """A distiller's settings with the comparison on, the session's teacher and this test's own
    checkpoint folder (so each test trains its own student alone)."""

    def make(**overrides):
        settings = dict(checkpoint_dir=str(workdir / "saved"), teacher_checkpoint=teacher_checkpoint,
                        compare_student_alone=True)
        return fast_config(**dict(settings, **overrides))

    return make


def must_not_train(*args, **kwargs):
    raise AssertionError("the student alone must not be trained here")


def log_text(model):
    return "".join(open(path).read() for path in glob.glob(f"log/{model}/*.log"))


def distiller_student_weights(checkpoint):
    """The student backbone's parameters in a distiller's checkpoint, named as the backbone's."""
    state = read_checkpoint(checkpoint)["state_dict"]
    return {name[len("student."):]: tensor for name, tensor in state.items() if name.startswith("student.")}


def assert_same_student(alone_result, alone_path, without_distillation):
    """The student alone (results of a run that compared with it, its cached file) is the
    distiller run ``without_distillation`` (every distillation weight at 0): same metrics on
    valid and test, same parameters."""
    assert dict(alone_result["student_alone_test_result"]) == dict(without_distillation["test_result"])
    assert dict(alone_result["student_alone_valid_result"]) == dict(without_distillation["best_valid_result"])
    cached = read_checkpoint(alone_path)["state_dict"]
    reference = distiller_student_weights(without_distillation["checkpoint"])
    assert cached.keys() == reference.keys()
    for name, tensor in reference.items():
        assert torch.equal(cached[name], tensor), name


def test_the_student_alone_is_the_distiller_without_its_distillation_terms(workdir, compared):
    distilled = run_recbole_derrd("DERRD", "ml-100k", config_dict=compared())
    without = run_recbole_derrd("DERRD", "ml-100k", config_dict=compared(
        checkpoint_dir=str(workdir / "without"), compare_student_alone=False, lambda_de=0, lambda_rrd=0))
    path = distilled["student_alone_checkpoint"]
    assert_same_student(distilled, path, without)
    assert os.path.basename(path).startswith("student-alone-BPR-ml-100k-")
    assert os.path.dirname(path) == str(workdir / "saved")
    cached = read_checkpoint(path)
    assert cached["model"] == "BPR" and cached["derrd"]["role"] == "student-alone"
    assert cached["derrd"]["test_result"] == dict(without["test_result"])
    # the distilled student is compared on the metric RecBole stops on (mrr@10)
    worse = bool(distilled["best_valid_score"] < distilled["student_alone_valid_result"]["mrr@10"])
    assert distilled["distilled_worse_than_alone"] is worse


def test_under_the_papers_setting_too(workdir, compared, monkeypatch):
    """Issue 38: paper.yaml sums every loss over the batch and decays the weights by 1e-3. The
    student alone trained RecBole's mean loss with that weight decay, 1,024 times heavier there,
    and collapsed; it now trains the distilled student's objective less the distillation terms,
    and needs no teacher for it."""
    paper = dict(epochs=2, train_batch_size=1024, learning_rate=0.001)  # paper.yaml's, not FAST's
    distilled = run_recbole_derrd("DERRD", "ml-100k", [PAPER], compared(**paper))
    without = run_recbole_derrd("DERRD", "ml-100k", [PAPER], compared(
        checkpoint_dir=str(workdir / "without"), compare_student_alone=False, lambda_de=0, lambda_rrd=0,
        **paper))
    assert without["loss_weights"] == {"lambda_de": 0, "lambda_rrd": 0}
    assert_same_student(distilled, distilled["student_alone_checkpoint"], without)
    for metric in ("hit@10", "ndcg@10"):
        assert distilled["student_alone_test_result"][metric] > 0.1 * distilled["test_result"][metric]
    alone = Config("DERRD", "ml-100k", [PAPER], compared(**paper))
    assert student_alone_config(alone)["loss_reduction"] == "sum"
    # trained again where its file was, the same: no teacher is read or scored for it
    path = distilled["student_alone_checkpoint"]
    before = read_checkpoint(path)["state_dict"]
    os.remove(path)
    monkeypatch.setattr(recbole_derrd.pipeline.training, "load_teacher", must_not_train)
    monkeypatch.setattr(recbole_derrd.pipeline.training, "prepare_teacher", must_not_train)
    split = SimpleNamespace(fingerprint=read_checkpoint(without["checkpoint"])["split_fingerprint"])
    assert prepare_student_alone(alone, split) == path
    after = read_checkpoint(path)["state_dict"]
    assert all(torch.equal(after[name], tensor) for name, tensor in before.items())


def test_a_second_distillation_reuses_the_cached_student_alone(workdir, compared, monkeypatch):
    first = run_recbole_derrd("DERRD", "ml-100k", config_dict=compared(epochs=1))
    path = first["student_alone_checkpoint"]
    before = os.stat(path)
    monkeypatch.setattr(recbole_derrd.pipeline.student_alone, "train_student_alone", must_not_train)
    # other distillation settings, and another distiller: the same student alone
    second = run_recbole_derrd("DERRD", "ml-100k", config_dict=compared(epochs=1, lambda_rrd=0.5))
    third = run_recbole_derrd("RD", "ml-100k", config_dict=compared(epochs=1, **FAST_RD))
    for result in (second, third):
        assert result["student_alone_checkpoint"] == path
        assert result["student_alone_test_result"] == first["student_alone_test_result"]
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert glob.glob(str(workdir / "saved" / "student-alone-*.pth")) == [path]


def test_the_fingerprint_follows_the_students_settings_and_the_split(workdir, compared):
    def path(model="DERRD", split="split-a", **overrides):
        config = Config(model, "ml-100k", config_dict=compared(**overrides))
        return student_alone_path(config, student_alone_config(config), split)

    reference = path()
    # distillation-only keys, and the distiller itself, leave the student alone as it is
    assert path(lambda_rrd=0.5) == reference
    assert path(use_de=False, rrd_topn=20, teacher_embedding_size=16) == reference
    assert path("RD", **FAST_RD) == reference
    assert path(compare_student_alone=False) == reference
    # the student's own settings, the data and the split make another student alone
    changed = [path(embedding_size=16), path(learning_rate=0.02), path(epochs=4),
               path(seed=7), path(split="split-b"),
               # and the loss reduction: the student alone trains the distiller's objective
               path(loss_reduction="sum")]
    assert len({reference, *changed}) == 1 + len(changed)

    config = Config("DERRD", "ml-100k", config_dict=compared(learning_rate=0.02, lambda_rrd=0.5))
    alone = student_alone_config(config)
    assert alone["model"] == "BPR" and alone["MODEL_TYPE"] == config["MODEL_TYPE"]
    assert (alone["embedding_size"], alone["learning_rate"]) == (8, 0.02)
    assert alone["eval_args"] == config["eval_args"] and alone["seed"] == config["seed"]
    for key in ("student_model", "lambda_rrd", "teacher_checkpoint", "teacher_model", "use_de",
                "compare_student_alone"):
        assert key not in alone.final_config_dict, key
    assert alone["loss_reduction"] == "mean"


def test_a_neumf_student_alone_has_the_students_sizes_and_input(workdir, fast_config, compared):
    """The student's own size keys are the distiller's (mf/mlp 20, from distiller/NeuMF.yaml),
    not RecBole's NeuMF defaults; BPR's embedding_size is dropped; NeuMF trains pointwise."""
    config = Config("RD", "ml-100k", config_dict=compared(student_model="NeuMF", **FAST_RD))
    alone = student_alone_config(config)
    sizes = {"mf_embedding_size": 20, "mlp_embedding_size": 20, "mlp_hidden_size": [20, 10]}
    plain = Config("NeuMF", "ml-100k", config_dict=fast_config(**sizes))
    assert {key: alone[key] for key in sizes} == sizes
    assert "embedding_size" not in alone.final_config_dict
    for key in ("MODEL_INPUT_TYPE", "train_neg_sample_args", "dropout_prob", "learning_rate",
                "epochs", "train_batch_size", "eval_args", "valid_metric", "metrics", "topk"):
        assert alone[key] == plain[key], key


def test_a_distillation_that_hurts_is_reported(workdir, fast_config):
    """An untrained teacher (one epoch at a negligible learning rate: a random ranking) and an
    overwhelming RRD weight: the distilled student learns the random ranking."""
    result = run_recbole_derrd("DERRD", "ml-100k", config_dict=fast_config(
        checkpoint_dir=str(workdir / "saved"), compare_student_alone=True, state="INFO",
        teacher_embedding_size=8, teacher_config={"epochs": 1, "learning_rate": 1e-6},
        use_de=False, lambda_rrd=1000.0))
    alone_valid = result["student_alone_valid_result"]["mrr@10"]
    assert result["best_valid_score"] < alone_valid
    assert result["distilled_worse_than_alone"] is True
    text = log_text("DERRD")
    assert "student vs teacher and student alone" in text and "distilled vs alone" in text
    assert "valid mrr@10 (best)" in text
    assert "WARNING" in text and "The distilled student (DERRD: BPR) is worse than the same " \
        "student trained alone on the validation split: mrr@10 " \
        f"{result['best_valid_score']:.4f} vs {alone_valid:.4f}" in text
    # the warning names the weights of the terms that ran (DE is off: no lambda_de)
    assert "(lambda_rrd=1000.0)" in text and "lambda_de=" not in text.split("WARNING")[1]


def test_turned_off_nothing_more_is_trained(workdir, compared, monkeypatch):
    monkeypatch.setattr(recbole_derrd.quick_start, "compare_student_alone", must_not_train)
    monkeypatch.setattr(recbole_derrd.pipeline.student_alone, "train_student_alone", must_not_train)
    result = run_recbole_derrd("DERRD", "ml-100k", config_dict=compared(
        epochs=1, compare_student_alone=False))
    assert result["test_result"]
    for key in ("student_alone_valid_result", "student_alone_test_result",
                "student_alone_checkpoint", "distilled_worse_than_alone"):
        assert result[key] is None, key
    assert not glob.glob(str(workdir / "saved" / "student-alone-*"))


def test_a_multi_process_run_skips_the_comparison(workdir, compared, monkeypatch):
    monkeypatch.setattr(recbole_derrd.pipeline.student_alone, "is_distributed", lambda config: True)
    monkeypatch.setattr(recbole_derrd.pipeline.student_alone, "train_student_alone", must_not_train)
    result = run_recbole_derrd("DERRD", "ml-100k", config_dict=compared(epochs=1, state="INFO"))
    assert result["student_alone_checkpoint"] is None and result["distilled_worse_than_alone"] is None
    assert "compare_student_alone: skipped in a multi-process run" in log_text("DERRD")


def global_random_state():
    return (random.getstate(), np.random.get_state()[1].tolist(), torch.get_rng_state())


def test_the_distilled_run_is_the_same_with_the_comparison_on_or_off(workdir, compared):
    runs = {}
    for on in (False, True):
        result = run_recbole_derrd("DERRD", "ml-100k", config_dict=compared(
            checkpoint_dir=str(workdir / f"saved-{on}"), compare_student_alone=on))
        runs[on] = result, global_random_state(), read_checkpoint(result["checkpoint"])["state_dict"]
    (off, off_state, off_weights), (on, on_state, on_weights) = runs[False], runs[True]
    assert on["student_alone_checkpoint"] and off["student_alone_checkpoint"] is None
    for key in ("best_valid_score", "best_valid_result", "test_result", "train_loss",
                "teacher_test_result"):
        assert on[key] == off[key], key
    assert off_weights.keys() == on_weights.keys()
    assert all(torch.equal(off_weights[name], on_weights[name]) for name in off_weights)
    # and the run leaves the random generators where the run without it leaves them
    assert on_state[:2] == off_state[:2] and torch.equal(on_state[2], off_state[2])


@pytest.mark.parametrize("model", ["DERRD", "RD", "CD"])
@pytest.mark.parametrize("value", ["yes", 1, None, [True]])
def test_a_non_boolean_value_is_refused(workdir, compared, model, value):
    with pytest.raises(ConfigValueError, match="compare_student_alone must be True or False"):
        Config(model, "ml-100k", config_dict=compared(compare_student_alone=value))
    assert not (workdir / "saved").exists()  # refused before anything is trained or cached
