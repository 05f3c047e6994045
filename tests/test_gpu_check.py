"""run_scripts/gpu_check.py (recbole_derrd.benchmark.gpu_check) on the CPU: a distiller's run, its
exported student evaluated again, and a mismatch between the two reported as a failure (the check
can fail); the check's verdict for given numbers."""

import json
import os
import sys

import pytest

from recbole_derrd.benchmark import gpu_check


def run_check(monkeypatch, tmp_path, teacher_checkpoint):
    monkeypatch.setattr(sys, "argv", [
        "gpu_check.py", "--device=cpu", "--epochs=1", "--variants=RD",
        f"--teacher_checkpoint={teacher_checkpoint}",
        f"--work={tmp_path / 'saved'}", f"--output={tmp_path / 'out'}"])
    status = gpu_check.main()
    with open(tmp_path / "out" / "check-cpu.json") as handle:
        report = json.load(handle)
    return status, report


@pytest.fixture
def fast_check(monkeypatch):
    """The check's runs with the tests' fast settings' sizes (RD's sampling small)."""
    original = gpu_check.check_variant

    def check_variant(name, model_name, overrides, args, initial):
        return original(name, model_name, dict(overrides, rd_topk=5, rd_rank_samples=10, state="ERROR"),
                        args, initial)

    monkeypatch.setattr(gpu_check, "check_variant", check_variant)


def test_exported_student_scores_the_same(workdir, monkeypatch, teacher_checkpoint, fast_check):
    status, report = run_check(monkeypatch, workdir, teacher_checkpoint)
    (entry,) = report["variants"]
    assert entry["name"] == "RD" and entry["epochs"] == 1
    # the same device: the exported student's metrics are the run's own, exactly
    assert entry["differences"] == {key: 0.0 for key in gpu_check.COMPARED}
    assert entry["matches"] and entry["losses_finite"]
    # one epoch of the tests' fast settings does not double the untrained student's test NDCG@10
    # (about 0.011 against 0.007): the check says so, fails, and the script's status is 1
    assert entry["device_test"]["ndcg@10"] > report["initial"]["ndcg@10"]
    assert not entry["trained"] and not entry["passed"]
    assert status == 1
    exported = [name for name in os.listdir(workdir / "saved") if name.startswith("BPR-from-RD-")]
    assert len(exported) == 1
    assert "| RD | 1 |" in (workdir / "out" / "check-cpu.md").read_text()


def test_a_mismatch_fails_the_check(workdir, monkeypatch, teacher_checkpoint, fast_check):
    original = gpu_check.evaluate_on_cpu

    def shifted(settings, state_dict=None):  # as if the CPU ranked differently
        result = original(settings, state_dict)
        if state_dict is not None:
            result["ndcg@10"] += 0.01
        return result

    monkeypatch.setattr(gpu_check, "evaluate_on_cpu", shifted)
    status, report = run_check(monkeypatch, workdir, teacher_checkpoint)
    (entry,) = report["variants"]
    assert entry["differences"]["ndcg@10"] == pytest.approx(0.01)
    assert not entry["matches"] and not entry["passed"]
    assert status == 1


DEVICE = {"ndcg@10": 0.1, "recall@10": 0.25, "hit@10": 0.5}
UNTRAINED = {"ndcg@10": 0.05}


@pytest.mark.parametrize("on_device, on_cpu, losses, expected", [
    # twice the untrained student's NDCG@10, the same on the CPU, finite losses: passed
    (DEVICE, DEVICE, [0.7, (0.5, 0.2)], (True, True, True, True)),
    # just under twice: not trained
    (dict(DEVICE, **{"ndcg@10": 0.099}), dict(DEVICE, **{"ndcg@10": 0.099}), [0.7], (False, True, True, False)),
    # the CPU 0.001 off on one metric (within the tolerance, 0.002): passed
    (DEVICE, dict(DEVICE, **{"recall@10": 0.251}), [0.7], (True, True, True, True)),
    # 0.003 off: the two devices do not match
    (DEVICE, dict(DEVICE, **{"hit@10": 0.497}), [0.7], (True, False, True, False)),
    # an epoch's loss term not finite
    (DEVICE, DEVICE, [0.7, (float("nan"), 0.2)], (True, True, False, False)),
])
def test_the_checks_verdict(on_device, on_cpu, losses, expected):
    """(trained, matches, losses finite, passed) for given numbers."""
    verdict = gpu_check.verdict(on_device, on_cpu, UNTRAINED, losses, tolerance=2e-3)
    assert (verdict["trained"], verdict["matches"], verdict["losses_finite"], verdict["passed"]) == expected
