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


# ----- user errors are one message, bugs keep their traceback -----

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(script, *args, env=None, cwd=None):
    import subprocess
    import sys

    environment = {key: value for key, value in os.environ.items() if key != "RECBOLE_DERRD_DEBUG"}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "run_scripts", script), *args],
        capture_output=True, text=True, env=environment, cwd=cwd, timeout=300,
    )


def test_run_script_reports_a_user_error_as_one_message(workdir):
    done = run_script("run.py", "--model=DERRD", "--gpu_id=''", "--lambda_de=-1",
                      "--teacher_checkpoint=no/such.pth", cwd=workdir)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: Invalid configuration for DERRD:")
    assert "lambda_de must be at least 0" in done.stderr and "no/such.pth" in done.stderr
    assert not (workdir / "saved").exists()


def test_debug_shows_the_traceback_of_a_user_error(workdir):
    done = run_script("export.py", "no/such.pth", env={"RECBOLE_DERRD_DEBUG": "1"}, cwd=workdir)
    assert done.returncode == 1 and "Traceback" in done.stderr
    assert "CheckpointError: Checkpoint file 'no/such.pth' does not exist" in done.stderr


def test_run_main_exit_statuses(monkeypatch, capsys):
    import sys

    from recbole_derrd.cli import run_main
    from recbole_derrd.errors import UserError

    def fails(error):
        raise error

    monkeypatch.delenv("RECBOLE_DERRD_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stop:
        run_main(fails, UserError("teacher_checkpoint: file 'x.pth' does not exist"))
    assert stop.value.code == 2
    assert capsys.readouterr().err == "error: teacher_checkpoint: file 'x.pth' does not exist\n"
    with pytest.raises(RuntimeError):  # a bug keeps its traceback
        run_main(fails, RuntimeError("a bug"))
    monkeypatch.setattr(sys, "argv", ["run.py", "--debug", "--epochs=1"])
    with pytest.raises(UserError):  # --debug: the traceback of a user error too
        run_main(fails, UserError("bad"))
    assert sys.argv == ["run.py", "--epochs=1"]  # RecBole's Config never sees --debug
    with pytest.raises(SystemExit) as stop:
        monkeypatch.setattr(sys, "argv", ["run.py"])
        run_main(fails, KeyboardInterrupt())
    assert stop.value.code == 130


# ----- impossible settings stop a run before any work -----


@pytest.fixture
def no_teacher_training(monkeypatch):
    import recbole_derrd.teacher

    def refuse(*args, **kwargs):
        raise AssertionError("the run must stop before a teacher is trained")

    monkeypatch.setattr(recbole_derrd.teacher, "train_teacher", refuse)


@pytest.mark.parametrize("model", ["DERRD", "BPR"])
@pytest.mark.parametrize("epochs, message", [(0, "epochs must be at least 1, got 0"),
                                             (-3, "epochs must be at least 1, got -3"),
                                             (1.5, "epochs must be an integer")])
def test_epochs_below_one_are_refused(workdir, fast_config, no_training, no_teacher_training,
                                      model, epochs, message):
    from recbole_derrd.validation import ConfigValueError

    with pytest.raises(ConfigValueError, match=message):
        run_recbole_derrd(model, "ml-100k", config_dict=fast_config(
            checkpoint_dir=str(workdir / "saved"), epochs=epochs))
    assert not (workdir / "saved").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"teacher_config": {"embedding_size": 0}}, "on-demand teacher .*embedding_size must be at least 1"),
        ({"teacher_config": {"epochs": 0}}, "on-demand teacher .*epochs must be at least 1"),
        ({"teacher_config": {"learning_rate": -0.1}}, "on-demand teacher .*learning_rate must be positive"),
        ({"teacher_model": "NeuMF", "teacher_config": {"mlp_hidden_size": [8, 0]}},
         "on-demand teacher .*mlp_hidden_size must be a non-empty list of positive integers"),
        ({"teacher_config": {"eval_args": 5}}, "on-demand teacher's settings .*eval_args"),
        ({"teacher_config": "{dir}/list.yaml"}, "must hold a mapping"),
    ],
)
def test_an_on_demand_teacher_is_checked_before_it_is_trained(
    workdir, fast_config, no_teacher_training, overrides, message
):
    from recbole_derrd.validation import ConfigValueError

    (workdir / "list.yaml").write_text("- 1\n- 2\n")
    overrides = {key: value.format(dir=workdir) if isinstance(value, str) else value
                 for key, value in overrides.items()}
    saved = workdir / "saved"
    with pytest.raises(ConfigValueError, match=message):
        run_recbole_derrd("DERRD", "ml-100k", config_dict=fast_config(
            checkpoint_dir=str(saved), teacher_checkpoint=None, **overrides))
    assert not saved.exists()  # nothing trained, nothing cached


HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
ROWS = "".join(f"{user}\t{item}\t{(user + item) % 5 + 1}\t{880000000 + item}\n"
               for user in range(1, 41) for item in range(1, 61) if (user * 7 + item * 3) % 4 == 0)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", r"mine\.inter: the file is empty"),
        (HEADER.encode(), r"mine\.inter: the file has a header but no data lines"),
        (ROWS.encode(), r"mine\.inter, line 1: header column '1' is not 'name:type'"),
        (("user:token\titem:token\trating:float\ttimestamp:float\n" + ROWS).encode(),
         r"line 1: the header has no column user_id, item_id"),
        (("user_id:token,item_id:token,rating:float,timestamp:float\n" + ROWS).encode(),
         r"line 1: header column .* is not 'name:type' \(is the header missing, or the separator another\?\)"),
        ((HEADER + "1\t2\tfive\t880000000\n" + ROWS).encode(),
         r"line 2: 'five' in column 'rating:float' is not a number"),
        ((HEADER + ROWS).encode() + b"3\t\xff\xfe\t1\t880000000\n",
         r"line \d+: bytes that are not valid utf-8"),
        ((HEADER + "1\t2\t3\n" + ROWS).encode(), r"line 2: 3 values, the header has 4 columns"),
        ((HEADER + "\t2\t3\t880000000\n" + ROWS).encode(), r"line 2: column 'user_id:token' is empty"),
    ],
    ids=["empty", "header only", "no header", "wrong header", "other separator", "word in a number",
         "undecodable", "short line", "empty id"],
)
def test_dataset_files_recbole_would_misread_are_refused(
    workdir, fast_config, no_training, content, message
):
    from recbole_derrd.atomic_files import DatasetFileError

    folder = workdir / "data" / "mine"
    folder.mkdir(parents=True)
    (folder / "mine.inter").write_bytes(content)
    config = fast_config(checkpoint_dir=str(workdir / "saved"), data_path=str(workdir / "data"),
                         load_col={"inter": ["user_id", "item_id", "rating", "timestamp"]})
    with pytest.raises(DatasetFileError, match=message) as error:
        run_recbole_derrd("BPR", "mine", config_dict=config)
    assert "e.g. 'user_id:token\\titem_id:token\\trating:float\\ttimestamp:float'" in str(error.value)
    assert not (workdir / "saved").exists()


def test_a_well_formed_dataset_file_runs(workdir, fast_config):
    folder = workdir / "data" / "mine"
    folder.mkdir(parents=True)
    (folder / "mine.inter").write_text(HEADER + ROWS + "\n")
    config = fast_config(checkpoint_dir=str(workdir / "saved"), data_path=str(workdir / "data"),
                         epochs=1, load_col={"inter": ["user_id", "item_id", "rating", "timestamp"]})
    assert run_recbole_derrd("BPR", "mine", config_dict=config)["test_result"]
