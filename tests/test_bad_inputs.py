"""Every bad input stops a run with a clear error before training, and nothing already saved
is overwritten."""

import os
import shutil
import urllib.error

import pytest
import torch

import recbole_derrd.data.dataset
import recbole_derrd.pipeline.training
from recbole_derrd import run_recbole_derrd
from recbole_derrd.files.checkpoint import CheckpointError, UntrustedCheckpointError, unique_path
from recbole_derrd.data.dataset import DatasetNotFoundError
from recbole_derrd.teacher.loading import TeacherError, TeacherMismatchError
from recbole_derrd.utils import UnknownModelError
from recbole_derrd.settings.validation import ConfigValueError

from helpers import directory_snapshot


@pytest.fixture
def saved_dir(workdir, teacher_checkpoint):
    """A saved/ folder holding a teacher and another file, checked unchanged after each test."""
    saved = workdir / "saved"
    saved.mkdir()
    shutil.copy(teacher_checkpoint, saved / "teacher.pth")
    (saved / "DERRD-earlier-run.pth").write_bytes(b"an earlier result")
    before = directory_snapshot(saved)
    yield saved
    assert directory_snapshot(saved) == before


@pytest.fixture
def no_teacher_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a bad input must be reported before the teacher is trained")

    monkeypatch.setattr(recbole_derrd.pipeline.training, "train_teacher", refuse)


def derrd(fast_config, saved_dir, **overrides):
    config = fast_config(checkpoint_dir=str(saved_dir), teacher_checkpoint=str(saved_dir / "teacher.pth"))
    config.update(overrides)
    return run_recbole_derrd("DERRD", "ml-100k", config_dict=config)


def modified_teacher(saved_dir, tmp_path, change):
    checkpoint = torch.load(saved_dir / "teacher.pth", weights_only=True)
    change(checkpoint)
    path = tmp_path / "modified-teacher.pth"
    torch.save(checkpoint, path)
    return str(path)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"rrd_num_interesting": 60, "rrd_topn": 50}, "must not exceed rrd_topn"),
        ({"lambda_de": -0.1}, "lambda_de must be at least 0"),
        ({"lambda_rrd": -1e-3}, "lambda_rrd must be at least 0"),
        ({"de_num_experts": 0}, "de_num_experts must be at least 1"),
        ({"rrd_topn": 0}, "rrd_topn must be at least 1"),
        ({"de_tau_end": 0.0}, "de_tau_end must be at least 1e-30"),
        ({"de_tau_start": 1e-308}, "de_tau_start must be at least 1e-30"),  # would overflow to NaN
        ({"loss_reduction": "median"}, "loss_reduction must be one of mean, sum"),
        ({"student_model": "NoSuchModel"}, "student_model must be one of"),
        ({"teacher_model": "NoSuchModel"}, "Unknown model 'NoSuchModel'"),
        ({"teacher_model": "SASRec"}, "general recommender"),
        ({"use_de": False, "use_rrd": False}, "nothing would be distilled"),
        ({"teacher_checkpoint": "no/such/teacher.pth"}, "does not exist"),
    ],
)
def test_impossible_settings_fail_when_the_config_is_built(
    fast_config, saved_dir, no_teacher_training, overrides, message
):
    with pytest.raises(ConfigValueError, match=message):
        derrd(fast_config, saved_dir, **overrides)


def test_all_problems_are_reported_together(fast_config, saved_dir):
    with pytest.raises(ConfigValueError) as error:
        derrd(fast_config, saved_dir, lambda_de=-1, de_num_experts=0)
    assert "lambda_de" in str(error.value) and "de_num_experts" in str(error.value)


def test_unknown_model_name(fast_config, saved_dir):
    with pytest.raises(UnknownModelError, match="Unknown model 'DERD'"):
        run_recbole_derrd("DERD", "ml-100k", config_dict=fast_config(checkpoint_dir=str(saved_dir)))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"rrd_topn": 1500}, "rrd_topn=1500 exceeds the items available"),
        ({"rrd_topn": 1000, "rrd_num_uninteresting": 200}, "rrd_num_uninteresting=200 exceeds"),
    ],
)
def test_topn_or_uninteresting_larger_than_a_user_has(
    fast_config, saved_dir, no_teacher_training, overrides, message
):
    # ml-100k's most active user has 1092 items outside its training split
    with pytest.raises(ConfigValueError, match=message):
        derrd(fast_config, saved_dir, teacher_checkpoint=None, **overrides)


def test_unreadable_teacher_file(fast_config, saved_dir, tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="Cannot read checkpoint"):
        derrd(fast_config, saved_dir, teacher_checkpoint=str(garbage))


@pytest.fixture
def foreign_checkpoint(workdir, tmp_path):
    """A checkpoint written by RecBole itself (it pickles its Config object)."""
    from recbole.config import Config as RecBoleConfig
    from recbole.data import create_dataset, data_preparation
    from recbole.model.general_recommender import BPR
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    config = RecBoleConfig("BPR", "ml-100k", config_dict={"gpu_id": "", "embedding_size": 16,
                                                         "checkpoint_dir": str(tmp_path / "foreign")})
    init_seed(config["seed"], config["reproducibility"])
    train_data = data_preparation(config, create_dataset(config))[0]
    trainer = Trainer(config, BPR(config, train_data.dataset))
    trainer._save_checkpoint(0, verbose=False)
    return trainer.saved_model_file


def test_foreign_checkpoint_needs_an_explicit_opt_in(fast_config, saved_dir, foreign_checkpoint):
    with pytest.raises(UntrustedCheckpointError, match="trust_checkpoint: True"):
        derrd(fast_config, saved_dir, teacher_checkpoint=foreign_checkpoint)
    result = derrd(
        fast_config, saved_dir, teacher_checkpoint=foreign_checkpoint, trust_checkpoint=True,
        epochs=1, checkpoint_dir=str(saved_dir.parent / "new-saved"),
    )
    assert result["teacher_parameters"] == (944 + 1683) * 16


@pytest.mark.parametrize(
    "change, error, message",
    [
        (lambda c: c["config"].update(seed=7), TeacherMismatchError, "seed: student 2020, teacher 7"),
        (lambda c: c["config"]["eval_args"].update(order="TO"), TeacherMismatchError, "eval_args"),
        (lambda c: c["config"].update(dataset="ml-1m"), TeacherMismatchError, "dataset"),
        (lambda c: c["config"].update(user_inter_num_interval="[5,inf)"), TeacherMismatchError,
         "user_inter_num_interval"),
        (lambda c: c.update(split_fingerprint="0123456789abcdef"), TeacherMismatchError,
         "another training split"),
        (lambda c: c["state_dict"].update(
            {"user_embedding.weight": torch.zeros(900, 32)}), TeacherMismatchError,
         "does not fit this run's data"),
        (lambda c: c["config"].update(model="SASRec"), TeacherError, "general recommender"),
        (lambda c: c["config"].update(model="DERRD"), TeacherError, "export its backbone"),
    ],
)
def test_teacher_from_other_data_or_of_another_kind(
    fast_config, saved_dir, tmp_path, change, error, message
):
    path = modified_teacher(saved_dir, tmp_path, change)
    with pytest.raises(error, match=message):
        derrd(fast_config, saved_dir, teacher_checkpoint=path)


def test_missing_dataset_says_where_to_put_the_files(workdir, fast_config, saved_dir):
    with pytest.raises(DatasetNotFoundError, match="Put the RecBole atomic files") as error:
        run_recbole_derrd(
            "DERRD", "no-such-dataset",
            config_dict=fast_config(checkpoint_dir=str(saved_dir), data_path=str(workdir / "data")),
        )
    assert os.path.join(str(workdir / "data"), "no-such-dataset") in str(error.value)


def test_failed_download_says_where_to_put_the_files(workdir, fast_config, saved_dir, monkeypatch):
    import recbole.utils.url

    def offline(url, folder):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(recbole.utils.url, "download_url", offline)
    with pytest.raises(DatasetNotFoundError, match="download from .* failed") as error:
        run_recbole_derrd(
            "DERRD", "ml-1m",
            config_dict=fast_config(checkpoint_dir=str(saved_dir), data_path=str(workdir / "data")),
        )
    assert "ml-1m.inter" in str(error.value)


def test_checkpoint_names_never_collide(tmp_path):
    first = tmp_path / "DERRD-Nov-27-2026_10-00-00.pth"
    first.write_bytes(b"kept")
    second = unique_path(str(first))
    assert second != str(first) and not os.path.exists(second)
    open(second, "wb").close()
    assert unique_path(str(first)) not in (str(first), second)


def test_a_checkpoint_config_never_runs_code(fast_config, saved_dir, tmp_path):
    """RecBole eval()s string values of a config dict; a configuration read back from a
    checkpoint (which loads with weights_only=True) must not be able to run code."""
    marker = tmp_path / "pwned"
    payload = f"open({str(marker)!r}, 'w').write('x') and 'ok'"
    path = modified_teacher(saved_dir, tmp_path, lambda c: c["config"].update(note=payload))
    result = derrd(fast_config, saved_dir, teacher_checkpoint=path, epochs=1,
                   checkpoint_dir=str(saved_dir.parent / "other-saved"))
    assert not marker.exists()
    assert result["teacher_checkpoint"] == path


def test_a_checkpoint_cannot_opt_in_to_unpickling(fast_config, saved_dir, foreign_checkpoint, tmp_path):
    """trust_checkpoint comes from the caller, never from a file: a DERRD checkpoint that stored
    trust_checkpoint=True and a foreign teacher is refused by load_data_and_model."""
    from recbole_derrd.quick_start import load_data_and_model

    result = derrd(fast_config, saved_dir, teacher_checkpoint=foreign_checkpoint, trust_checkpoint=True,
                   epochs=1, checkpoint_dir=str(saved_dir.parent / "trusting-saved"))
    stored = torch.load(result["checkpoint"], weights_only=True)
    assert stored["config"]["trust_checkpoint"] is True
    with pytest.raises(UntrustedCheckpointError):
        load_data_and_model(result["checkpoint"])
    assert load_data_and_model(result["checkpoint"], trust_checkpoint=True)[1].teacher.name == "BPR"


def test_same_second_runs_create_distinct_files(tmp_path):
    from recbole_derrd.files.checkpoint import create_checkpoint, resume_path

    path = str(tmp_path / "DERRD-Nov-27-2026_10-00-00.pth")
    first = create_checkpoint({"run": 1}, path, resume=True)
    second = create_checkpoint({"run": 2}, path, resume=True)  # the same second, another run
    assert first == path and second != first
    assert torch.load(resume_path(first), weights_only=True) == {"run": 1}
    assert torch.load(resume_path(second), weights_only=True) == {"run": 2}
    open(str(tmp_path / "DERRD-Nov-27-2026_10-00-00-2.pth"), "wb").close()
    third = create_checkpoint({"run": 3}, path, resume=True)  # -2 is taken by its best model
    assert third.endswith("-3.pth")
    fourth = create_checkpoint({"run": 4}, path)  # a best model: every taken name is skipped
    assert fourth.endswith("-4.pth") and torch.load(fourth, weights_only=True) == {"run": 4}
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
