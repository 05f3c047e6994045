"""End-to-end runs on ml-100k (RecBole's bundled copy): a distillation really trains and
evaluates, its checkpoint reloads safely and reproduces its metrics, the teacher is cached."""

import glob
import os

import pytest
import torch

import recbole_derrd.pipeline.training
from recbole_derrd import run_recbole_derrd
from recbole_derrd.quick_start import evaluate_model, load_data_and_model


def test_derrd_trains_evaluates_and_reloads(workdir, fast_config, teacher_checkpoint):
    result = run_recbole_derrd(
        "DERRD", "ml-100k", config_dict=fast_config(state="INFO", epochs=4)
    )
    # it really trains: the summed loss goes down epoch after epoch
    losses = [result["train_loss"][epoch] for epoch in sorted(result["train_loss"])]
    assert len(losses) == 4 and all(b < a for a, b in zip(losses, losses[1:])), losses
    # RecBole's metrics, for the student and for its teacher on the same split
    for metrics in (result["test_result"], result["teacher_test_result"]):
        assert set(metrics) == {"recall@10", "mrr@10", "ndcg@10", "hit@10", "precision@10"}
        assert all(0.0 <= value <= 1.0 for value in metrics.values())
    assert result["test_result"]["hit@10"] > 0.2  # far above a random ranking (about 0.05)
    assert result["teacher_checkpoint"] == teacher_checkpoint
    # 943 + 1682 ids (padding included) x 8 dims; the teacher has 32 dims
    assert result["student_parameters"] == (944 + 1683) * 8
    assert result["teacher_parameters"] == (944 + 1683) * 32

    # the log shows student and teacher side by side, with parameter counts
    log_text = open(glob.glob("log/DERRD/*.log")[0]).read()
    assert "student vs teacher" in log_text and "parameters" in log_text
    assert f"{(944 + 1683) * 8:,}" in log_text and f"{(944 + 1683) * 32:,}" in log_text

    # the checkpoint is plain data and reproduces the test metrics
    checkpoint = torch.load(result["checkpoint"], weights_only=True)
    assert checkpoint["model"] == "DERRD"
    assert not any("teacher" in key for key in checkpoint["state_dict"])
    config, model, _, train_data, _, test_data = load_data_and_model(result["checkpoint"])
    assert dict(evaluate_model(config, model, train_data, test_data)) == dict(result["test_result"])


def test_second_run_reuses_the_cached_teacher(workdir, fast_config, monkeypatch):
    config = fast_config(epochs=1, checkpoint_dir=str(workdir / "saved"),
                         teacher_config={"epochs": 1})
    first = run_recbole_derrd("DERRD", "ml-100k", config_dict=dict(config))
    assert os.path.isfile(first["teacher_checkpoint"])
    mtime = os.path.getmtime(first["teacher_checkpoint"])

    def must_not_train(*args, **kwargs):
        raise AssertionError("the cached teacher should have been reused")

    monkeypatch.setattr(recbole_derrd.pipeline.training, "train_teacher", must_not_train)
    second = run_recbole_derrd("DERRD", "ml-100k", config_dict=dict(config))
    assert second["teacher_checkpoint"] == first["teacher_checkpoint"]
    assert os.path.getmtime(first["teacher_checkpoint"]) == mtime
    # other teacher settings are another teacher: it is trained, the first one is kept
    monkeypatch.undo()
    third = run_recbole_derrd(
        "DERRD", "ml-100k", config_dict=dict(config, teacher_embedding_size=16)
    )
    assert third["teacher_checkpoint"] != first["teacher_checkpoint"]
    assert os.path.getmtime(first["teacher_checkpoint"]) == mtime


def test_recbole_baseline_runs_through_the_same_path(workdir, fast_config):
    result = run_recbole_derrd("BPR", "ml-100k", config_dict=fast_config(epochs=2))
    assert result["test_result"]["hit@10"] > 0.0
    checkpoint = torch.load(result["checkpoint"], weights_only=True)
    assert checkpoint["model"] == "BPR" and "split_fingerprint" in checkpoint


@pytest.mark.parametrize("switches, names", [
    ({"use_de": True, "use_rrd": False}, ("base", "de")),
    ({"use_de": False, "use_rrd": True}, ("base", "rrd")),
])
def test_de_only_and_rrd_only(workdir, fast_config, teacher_checkpoint, switches, names):
    result = run_recbole_derrd(
        "DERRD", "ml-100k",
        config_dict=fast_config(epochs=1, teacher_checkpoint=teacher_checkpoint, state="INFO",
                                **switches),
    )
    checkpoint = torch.load(result["checkpoint"], weights_only=True)
    has_experts = any(key.startswith("experts.") for key in checkpoint["state_dict"])
    assert has_experts == switches["use_de"]
    assert result["test_result"]["hit@10"] > 0.05  # a random ranking of 1682 items: ~0.05
    # the training log names exactly the loss parts that are on
    epoch_line = next(line for line in open(glob.glob("log/DERRD/*.log")[0])
                      if "epoch 0 training" in line)
    logged = [name for name in ("base", "de", "rrd") if f"{name} loss:" in epoch_line]
    assert tuple(logged) == names
