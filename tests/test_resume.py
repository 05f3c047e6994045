"""Resume and reproducibility: a run stopped during an epoch and resumed ends exactly where an
uninterrupted run ends; the same seed gives the same metrics; bad resume files are refused
before training, and nothing saved is overwritten."""

import glob
import os
import shutil

import pytest
import torch

from recbole.trainer import Trainer

from recbole_derrd import run_recbole_derrd
from recbole_derrd.files.checkpoint import CheckpointError

from helpers import directory_snapshot


class Stop(Exception):
    """Stands for a crash or a kill in the middle of a run."""


@pytest.fixture(scope="module")
def interrupted_saved(derrd_run, tmp_path_factory):
    """The reference run's configuration, stopped when epoch 2 of 3 starts training (RecBole's
    loop raises, as a crash or a kill would): its checkpoint_dir holds the best-model file and
    the resume file."""
    config_dict, _ = derrd_run
    directory = tmp_path_factory.mktemp("interrupted")
    config = dict(config_dict, checkpoint_dir=str(directory / "saved"))
    train_epoch = Trainer._train_epoch

    def stopping(self, train_data, epoch_idx, *args, **kwargs):
        if epoch_idx == 2:
            raise Stop("stopped in epoch 2")
        return train_epoch(self, train_data, epoch_idx, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(directory)
        patch.setattr(Trainer, "_train_epoch", stopping)
        with pytest.raises(Stop):
            run_recbole_derrd("DERRD", "ml-100k", config_dict=dict(config))
    return config, directory / "saved"


@pytest.fixture
def interrupted(interrupted_saved, workdir):
    """A copy of the interrupted run's checkpoint_dir for one test: ``(config, folder)``."""
    config, saved = interrupted_saved
    copy = workdir / "saved"
    shutil.copytree(saved, copy)
    return dict(config, checkpoint_dir=str(copy)), copy


def files_of(saved):
    """``(best-model file, resume file)`` of the interrupted run."""
    best_file, resume_file = sorted(glob.glob(str(saved / "DERRD-*.pth")), key=len)
    return best_file, resume_file


def test_resumed_run_ends_like_an_uninterrupted_one(derrd_run, interrupted):
    _, uninterrupted = derrd_run
    config, saved = interrupted
    best_file, resume_file = files_of(saved)
    assert resume_file == best_file[: -len(".pth")] + ".resume.pth"
    state = torch.load(resume_file, weights_only=True)
    assert state["kind"] == "resume" and state["epoch"] == 1  # written when epoch 2 started
    assert state["best_model_file"] == os.path.basename(best_file)
    assert len(state["random_states"]) == 1 and "optimizer" in state

    resumed = run_recbole_derrd("DERRD", "ml-100k", config_dict=dict(config), resume=resume_file)
    assert dict(resumed["test_result"]) == dict(uninterrupted["test_result"])
    assert dict(resumed["best_valid_result"]) == dict(uninterrupted["best_valid_result"])
    assert resumed["train_loss"] == uninterrupted["train_loss"]  # every epoch, same losses
    # it went on writing the interrupted run's own two files, and no others
    assert resumed["checkpoint"] == best_file and resumed["resume_file"] == resume_file
    assert sorted(os.listdir(saved)) == sorted(map(os.path.basename, (best_file, resume_file)))
    final = torch.load(resume_file, weights_only=True)
    assert final["finished"] is True and final["epoch"] == 1  # last started: epoch 2


def test_resuming_from_the_best_model_file_finds_its_resume_file(derrd_run, interrupted):
    _, uninterrupted = derrd_run
    config, saved = interrupted
    best_file, _ = files_of(saved)
    resumed = run_recbole_derrd("DERRD", "ml-100k", config_dict=dict(config), resume=best_file)
    assert dict(resumed["test_result"]) == dict(uninterrupted["test_result"])


def test_same_seed_same_metrics_other_seed_other_metrics(derrd_run, workdir, fast_config):
    config_dict, first = derrd_run
    second = run_recbole_derrd(
        "DERRD", "ml-100k", config_dict=dict(config_dict, checkpoint_dir=str(workdir / "again"))
    )
    assert dict(second["test_result"]) == dict(first["test_result"])
    assert second["train_loss"] == first["train_loss"]
    # another seed is another split and initialisation (and so another teacher, trained on demand)
    other = run_recbole_derrd(
        "DERRD", "ml-100k", config_dict=fast_config(seed=2021, teacher_config={"epochs": 1},
                                                   checkpoint_dir=str(workdir / "other"))
    )
    assert dict(other["test_result"]) != dict(first["test_result"])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model": "BPR"}, "continues a run of model DERRD, this run's model is BPR"),
        ({"dataset": "ml-1m"}, "continues a run of dataset ml-100k, this run's dataset is ml-1m"),
        ({"epochs": 2}, "nothing is left to train"),
        ({"embedding_size": 4}, "parameters do not fit this model"),
    ],
)
def test_resume_of_another_run_fails_before_training(interrupted, monkeypatch, change, message):
    config, saved = interrupted
    _, resume_file = files_of(saved)
    before = directory_snapshot(saved)
    model = change.pop("model", "DERRD")
    dataset = change.pop("dataset", "ml-100k")

    def no_training(*args, **kwargs):
        raise AssertionError("a bad resume must be reported before training")

    monkeypatch.setattr(Trainer, "_train_epoch", no_training)
    with pytest.raises(CheckpointError, match=message):
        run_recbole_derrd(model, dataset, config_dict=dict(config, **change), resume=resume_file)
    assert directory_snapshot(saved) == before


def test_a_file_that_is_no_resume_file_is_refused(interrupted, teacher_checkpoint, tmp_path):
    config, saved = interrupted
    lone_checkpoint = tmp_path / "lone.pth"  # a best-model file without its resume file
    shutil.copy(files_of(saved)[0], lone_checkpoint)
    before = directory_snapshot(saved)
    for path, message in [
        (str(lone_checkpoint), "is not a resume file"),
        (teacher_checkpoint, "is not a resume file"),
        (str(tmp_path / "missing.resume.pth"), "does not exist"),
    ]:
        with pytest.raises(CheckpointError, match=message):
            run_recbole_derrd("DERRD", "ml-100k", config_dict=dict(config), resume=path)
    assert directory_snapshot(saved) == before


def test_resume_on_changed_data_fails_before_training(interrupted, monkeypatch):
    # the dataset files changed since the run stopped: same settings, another training split
    config, saved = interrupted
    _, resume_file = files_of(saved)
    state = torch.load(resume_file, weights_only=True)
    state["split_fingerprint"] = "0123456789abcdef"
    torch.save(state, resume_file)
    before = directory_snapshot(saved)

    def no_training(*args, **kwargs):
        raise AssertionError("a bad resume must be reported before training")

    monkeypatch.setattr(Trainer, "_train_epoch", no_training)
    with pytest.raises(CheckpointError, match="another training split"):
        run_recbole_derrd("DERRD", "ml-100k", config_dict=dict(config), resume=resume_file)
    assert directory_snapshot(saved) == before


def test_resume_without_the_best_model_file_fails(interrupted):
    config, saved = interrupted
    best_file, resume_file = files_of(saved)
    os.remove(best_file)
    with pytest.raises(CheckpointError, match="its best model, .* is missing"):
        run_recbole_derrd("DERRD", "ml-100k", config_dict=dict(config), resume=resume_file)
    assert os.listdir(saved) == [os.path.basename(resume_file)]


def test_a_finished_run_is_not_resumed(derrd_run, workdir):
    """The uninterrupted reference run finished: its resume file says so, and resuming it
    (which would train again and could overwrite its best model) is refused."""
    config, result = derrd_run
    saved = workdir / "saved"
    shutil.copytree(config["checkpoint_dir"], saved)
    resume_file = str(saved / os.path.basename(result["resume_file"]))
    assert torch.load(resume_file, weights_only=True)["finished"] is True
    before = directory_snapshot(saved)
    with pytest.raises(CheckpointError, match="that run finished"):
        run_recbole_derrd("DERRD", "ml-100k", config_dict=dict(config, checkpoint_dir=str(saved)),
                          resume=resume_file)
    assert directory_snapshot(saved) == before


def file_bytes(path):
    with open(path, "rb") as handle:
        return handle.read()


@pytest.mark.parametrize("stored_name", ["cached teacher", "absolute path", "parent folder"])
def test_a_resume_file_cannot_choose_the_file_it_writes(
    derrd_run, interrupted, teacher_checkpoint, stored_name
):
    """The best-model file of a resumed run is derived from the resume file's own name, never
    read from it: a resume file that names the cached teacher, an absolute path or a '../'
    path leaves that file as it was, and the run writes its own best model."""
    _, uninterrupted = derrd_run
    config, saved = interrupted
    best_file, resume_file = files_of(saved)
    victim = saved / "teacher-BPR-ml-100k-0123456789ab.pth"
    shutil.copy(teacher_checkpoint, victim)
    outside = saved.parent / "outside.pth"
    outside.write_bytes(b"a file outside the run's folder")
    stored = {"cached teacher": victim.name, "absolute path": str(outside),
              "parent folder": "../outside.pth"}[stored_name]
    state = torch.load(resume_file, weights_only=True)
    state["best_model_file"] = stored
    torch.save(state, resume_file)
    victim_bytes, outside_bytes = file_bytes(victim), file_bytes(outside)

    resumed = run_recbole_derrd("DERRD", "ml-100k", config_dict=dict(config), resume=resume_file)
    assert resumed["checkpoint"] == best_file
    assert dict(resumed["test_result"]) == dict(uninterrupted["test_result"])
    assert file_bytes(victim) == victim_bytes and file_bytes(outside) == outside_bytes


def test_resume_never_writes_over_a_file_it_did_not_create(interrupted, teacher_checkpoint):
    """Where the resumed run would write its best model lies another file (here a teacher):
    refused before training, the file untouched."""
    config, saved = interrupted
    best_file, resume_file = files_of(saved)
    shutil.copy(teacher_checkpoint, best_file)
    before = directory_snapshot(saved)
    with pytest.raises(CheckpointError, match="is not the best model of the interrupted run"):
        run_recbole_derrd("DERRD", "ml-100k", config_dict=dict(config), resume=resume_file)
    assert directory_snapshot(saved) == before


@pytest.mark.parametrize(
    "tamper, message",
    [
        ("rename", "rename the file back"),
        ("no run id", "does not say which run wrote it"),
    ],
)
def test_a_resume_file_whose_outputs_cannot_be_derived_is_refused(interrupted, tamper, message):
    config, saved = interrupted
    _, resume_file = files_of(saved)
    if tamper == "rename":
        path = str(saved / "my-copy.pth")
        shutil.copy(resume_file, path)
    else:
        path = resume_file
        state = torch.load(resume_file, weights_only=True)
        del state["run_id"]
        torch.save(state, resume_file)
    before = directory_snapshot(saved)
    with pytest.raises(CheckpointError, match=message):
        run_recbole_derrd("DERRD", "ml-100k", config_dict=dict(config), resume=path)
    assert directory_snapshot(saved) == before


@pytest.mark.parametrize(
    "change, message",
    [
        ({"seed": 7}, "other data, split or seed settings .*seed: 2020 -> 7"),
        ({"eval_args": {"split": {"RS": [0.7, 0.2, 0.1]}}}, "other data, split or seed settings .*eval_args"),
        ("split fingerprint", "another training split"),
        ({"teacher_embedding_size": 64}, "its teacher is another one .*teacher_embedding_size: 32 -> 64"),
        ({"de_num_experts": 2}, "parameters do not fit .*de_num_experts: 4 -> 2"),
    ],
    ids=["seed", "split keys", "changed data", "other teacher", "other sizes"],
)
def test_a_resume_that_does_not_fit_is_refused_before_a_teacher_is_trained(
    interrupted, monkeypatch, change, message
):
    """With an on-demand teacher (no teacher_checkpoint), a resume of another seed, split or
    data is refused before that teacher is trained or cached."""
    import recbole_derrd.pipeline.training

    config, saved = interrupted
    _, resume_file = files_of(saved)
    if change == "split fingerprint":
        state = torch.load(resume_file, weights_only=True)
        state["split_fingerprint"] = "0123456789abcdef"
        torch.save(state, resume_file)
        change = {}
    before = directory_snapshot(saved)

    def refuse(*args, **kwargs):
        raise AssertionError("a bad resume must be reported before the teacher is trained")

    monkeypatch.setattr(recbole_derrd.pipeline.training, "train_teacher", refuse)
    with pytest.raises(CheckpointError, match=message):
        run_recbole_derrd("DERRD", "ml-100k", resume=resume_file,
                          config_dict=dict(config, teacher_checkpoint=None, **change))
    assert directory_snapshot(saved) == before
