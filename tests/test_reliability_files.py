"""Reliability of the files (issue 37, items 1-3), from the user's side: the scripts' exit
status and output. A resumed run holds its files for the whole run (a second resume is
refused before any work), every search for a free name ends and takes any directory entry as
taken, lock files are never followed through a link, and a resume file is not exported."""

import fcntl
import os
import subprocess
import sys

import pytest
import torch

from recbole.trainer import Trainer

from recbole_derrd import run_recbole_derrd
from recbole_derrd.files.checkpoint import resume_path

from helpers import REPO, directory_snapshot, one_error_line, run_script_in_process, write_small_dataset

#: A baseline on the small dataset: a few epochs of well under a second each.
SMALL = ["--model=BPR", "--dataset=small", "--gpu_id=''", "--embedding_size=8", "--epochs=6",
         "--stopping_step=100", "--show_progress=False", "--state=ERROR", "--train_batch_size=64"]


class Stop(Exception):
    """Stands for an interrupt in the middle of a run."""


@pytest.fixture
def interrupted_small(workdir):
    """A BPR run on the small dataset stopped when epoch 2 starts: ``(flags, best model, resume
    file)``; the flags run it again with ``--resume``."""
    write_small_dataset(workdir / "data")
    flags = SMALL + [f"--data_path={workdir / 'data'}", f"--checkpoint_dir={workdir / 'saved'}"]
    train_epoch = Trainer._train_epoch

    def stopping(self, train_data, epoch_idx, *args, **kwargs):
        if epoch_idx == 2:
            raise Stop()
        return train_epoch(self, train_data, epoch_idx, *args, **kwargs)

    config = {flag[2:].split("=")[0]: flag.split("=", 1)[1] for flag in flags[2:]}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Trainer, "_train_epoch", stopping)
        with pytest.raises(Stop):
            run_recbole_derrd("BPR", "small", config_dict=config)
    (resume_file,) = [str(path) for path in (workdir / "saved").glob("*.resume.pth")]
    return flags, resume_file[: -len(".resume.pth")] + ".pth", resume_file


def test_a_second_resume_of_a_running_resume_is_refused_before_any_work(interrupted_small, workdir):
    """While a run holds the interrupted run's files, resuming them again (by their path, or
    through a link to their folder) is one line, exit 2, and the files are unchanged."""
    flags, best_model, resume_file = interrupted_small
    before = directory_snapshot(workdir / "saved")
    (workdir / "linked").symlink_to(workdir / "saved")  # the same folder, through a link
    linked = str(workdir / "linked" / os.path.basename(resume_file))
    with open(best_model + ".lock", "a") as lock:  # the other resumed run, still training
        fcntl.flock(lock, fcntl.LOCK_EX)
        for path in (resume_file, linked):
            status, _, stderr = run_script_in_process("run.py", *flags, f"--resume={path}")
            assert status == 2
            assert "being written by another run" in one_error_line(stderr)
    after = directory_snapshot(workdir / "saved")
    after.pop(os.path.basename(best_model) + ".lock")  # the other run's
    assert after == before


def test_two_resumes_at_once_one_runs_and_keeps_its_model(interrupted_small, workdir):
    """Two run.py --resume of the same files started together (one with another learning
    rate): one runs to the end, the other is refused with one line; the best-model file holds
    the model of the run that ran."""
    flags, best_model, resume_file = interrupted_small
    runs = [subprocess.Popen([sys.executable, os.path.join(REPO, "run_scripts", "run.py"), *flags,
                              f"--resume={resume_file}", *extra],
                             cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for extra in ([], ["--learning_rate=0.5"])]
    outputs = [run.communicate(timeout=240) for run in runs]
    statuses = [run.returncode for run in runs]
    assert sorted(statuses) == [0, 2], outputs
    loser = statuses.index(2)
    one_error_line(outputs[loser][1])
    stored = torch.load(best_model, weights_only=True)["config"]["learning_rate"]
    assert stored == (0.5 if statuses[1] == 0 else 0.001)
    assert not os.path.exists(best_model + ".lock")  # removed by the run that held it


def test_a_live_run_holds_its_files_while_it_trains(interrupted_small, workdir, monkeypatch):
    """A run holds its files from the moment it claims them (so a resume of it while it
    trains is refused, as above) and releases them when its training ends."""
    flags, _, _ = interrupted_small
    config = {flag[2:].split("=")[0]: flag.split("=", 1)[1] for flag in flags[2:]}
    config["checkpoint_dir"] = str(workdir / "live")
    train_epoch = Trainer._train_epoch
    held = []

    def probing(self, train_data, epoch_idx, *args, **kwargs):
        if epoch_idx == 1:  # as another process would try it
            with open(self.saved_model_file + ".lock", "a") as probe:
                with pytest.raises(BlockingIOError):
                    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held.append(True)
        return train_epoch(self, train_data, epoch_idx, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_epoch", probing)
    result = run_recbole_derrd("BPR", "small", config_dict=config)
    assert held and os.path.isfile(result["checkpoint"])
    assert not os.path.exists(result["checkpoint"] + ".lock")


def test_export_to_a_dangling_link_ends_and_leaves_the_link(derrd_run, workdir):
    """`export.py <best model> --output=<dangling link>` used to loop for ever: now it writes
    the next free name and the link (and its missing target) are left alone."""
    _, result = derrd_run
    (workdir / "out.pth").symlink_to(workdir / "nonexistent")
    status, stdout, stderr = run_script_in_process(
        "export.py", result["checkpoint"], f"--output={workdir / 'out.pth'}", timeout=60)
    assert status == 0, stderr
    assert stdout.strip() == str(workdir / "out-1.pth")
    assert os.path.islink(workdir / "out.pth") and not os.path.lexists(workdir / "nonexistent")


def test_every_free_name_search_ends(tmp_path, monkeypatch):
    """A folder where every name is taken ends the search with one message (the bound is
    lowered here so that the test is quick), whatever kind of entry takes the names."""
    from recbole_derrd.files import writing
    from recbole_derrd.files.checkpoint import (NoFreeNameError, create_checkpoint, unique_path,
                                                write_new_text_file)

    monkeypatch.setattr(writing, "MAX_NAME_TRIES", 3)
    (tmp_path / "r.md").symlink_to(tmp_path / "missing")
    (tmp_path / "r-1.md").mkdir()
    (tmp_path / "r-2.md").write_text("earlier")
    for attempt in (lambda: write_new_text_file("x", str(tmp_path / "r.md")),
                    lambda: unique_path(str(tmp_path / "r.md")),
                    lambda: create_checkpoint({"a": 1}, str(tmp_path / "r.md"))):
        with pytest.raises(NoFreeNameError, match="No free file name"):
            attempt()
    assert sorted(os.listdir(tmp_path)) == ["r-1.md", "r-2.md", "r.md"]
    assert not os.path.lexists(tmp_path / "missing")


@pytest.mark.parametrize("which", ["teacher cache", "run files"])
def test_a_lock_file_is_never_followed_through_a_link(tmp_path, which):
    from recbole_derrd.files.locks import LockFileError, hold_run_files
    from recbole_derrd.teacher.cache import training_lock

    target = tmp_path / "elsewhere" / "victim"
    target.parent.mkdir()
    (tmp_path / "model.pth.lock").symlink_to(target)
    with pytest.raises(LockFileError, match="is a symbolic link"):
        with (training_lock if which == "teacher cache" else hold_run_files)(str(tmp_path / "model.pth")):
            pass
    assert not os.path.lexists(target)


def test_exporting_a_resume_file_is_refused_and_an_unfinished_run_warned(derrd_run, workdir):
    _, result = derrd_run
    best_model, resume_file = workdir / "DERRD-run.pth", workdir / "DERRD-run.resume.pth"
    best_model.write_bytes(open(result["checkpoint"], "rb").read())
    state = torch.load(resume_path(result["checkpoint"]), weights_only=True)
    state["finished"] = False  # the run was interrupted in its last epoch
    torch.save(state, resume_file)

    status, stdout, stderr = run_script_in_process("export.py", resume_file)
    assert status == 2 and stdout == ""
    line = one_error_line(stderr)
    assert "is a resume file" in line and f"'{best_model}'" in line
    status, stdout, stderr = run_script_in_process("export.py", best_model)
    assert status == 0 and os.path.isfile(stdout.strip())
    assert "did not finish" in stderr and f"--resume={resume_file}" in stderr
