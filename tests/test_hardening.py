"""Hardening (issue 11): no file is unpickled without ``trust_checkpoint``, user errors are
one clear message, impossible settings stop a run before any work, and nothing is
half-written or done twice."""

import os
import pickle

import pytest

from recbole.trainer import Trainer

from recbole_derrd import run_recbole_derrd
from recbole_derrd.checkpoint import UntrustedCheckpointError


class ShellCommand:
    """Unpickling this runs a shell command (what a planted pickle would do)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def plant_pickle(path, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(ShellCommand(f"touch {marker}")))


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the run must stop before training")

    monkeypatch.setattr(Trainer, "_train_epoch", refuse)


@pytest.mark.parametrize("model", ["DERRD", "BPR"])
@pytest.mark.parametrize(
    "keys, planted",
    [
        ({"dataset_save_path": "{dir}/mine.pth"}, "mine.pth"),
        ({"save_dataset": True}, "ml-100k-Dataset.pth"),
        ({"dataloaders_save_path": "{dir}/loaders.pth"}, "loaders.pth"),
        ({"save_dataloaders": True}, "ml-100k-for-{model}-dataloader.pth"),
    ],
    ids=["dataset_save_path", "save_dataset", "dataloaders_save_path", "save_dataloaders"],
)
def test_recbole_caches_are_not_unpickled_without_opt_in(
    workdir, fast_config, teacher_checkpoint, no_training, model, keys, planted
):
    saved = workdir / "saved"
    marker = workdir / "pwned"
    plant_pickle(saved / planted.format(model=model), marker)
    config = fast_config(checkpoint_dir=str(saved), teacher_checkpoint=teacher_checkpoint)
    if model != "DERRD":
        config = {key: value for key, value in config.items()
                  if key in ("gpu_id", "state", "epochs", "checkpoint_dir")}
    config.update({key: value.format(dir=saved) if isinstance(value, str) else value
                   for key, value in keys.items()})
    with pytest.raises(UntrustedCheckpointError, match="trust_checkpoint: True") as error:
        run_recbole_derrd(model, "ml-100k", config_dict=config)
    assert planted.format(model=model) in str(error.value)
    assert not marker.exists()


def test_a_trusted_cache_is_unpickled(workdir, fast_config, teacher_checkpoint, no_training):
    """The opt-in is real (and the test above would see an unpickling): with
    trust_checkpoint the planted file is read, and its command runs."""
    marker = workdir / "pwned"
    plant_pickle(workdir / "mine.pth", marker)
    config = fast_config(teacher_checkpoint=teacher_checkpoint, trust_checkpoint=True,
                         dataset_save_path=str(workdir / "mine.pth"))
    with pytest.raises(Exception):
        run_recbole_derrd("DERRD", "ml-100k", config_dict=config)
    assert marker.exists()
