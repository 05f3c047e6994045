"""Hardening (issue 11): no file is unpickled without ``trust_checkpoint``, user errors are
one clear message, impossible settings stop a run before any work, and nothing is
half-written or done twice."""

import os
import pickle

import pytest

from recbole.trainer import Trainer

from recbole_derrd import run_recbole_derrd
from recbole_derrd.files.checkpoint import UntrustedCheckpointError


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
    import recbole_derrd.pipeline.training

    def refuse(*args, **kwargs):
        raise AssertionError("the run must stop before a teacher is trained")

    monkeypatch.setattr(recbole_derrd.pipeline.training, "train_teacher", refuse)


@pytest.mark.parametrize("model", ["DERRD", "BPR"])
@pytest.mark.parametrize("epochs, message", [(0, "epochs must be at least 1, got 0"),
                                             (-3, "epochs must be at least 1, got -3"),
                                             (1.5, "epochs must be an integer")])
def test_epochs_below_one_are_refused(workdir, fast_config, no_training, no_teacher_training,
                                      model, epochs, message):
    from recbole_derrd.settings.validation import ConfigValueError

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
    from recbole_derrd.settings.validation import ConfigValueError

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
    from recbole_derrd.data.atomic_files import DatasetFileError

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


# ----- nothing half-written, nothing done twice -----


class Crash(Exception):
    """Stands for a crash or an interrupt in the middle of a write or a run."""


def test_an_interrupted_write_leaves_the_previous_file(tmp_path, monkeypatch):
    import torch

    from recbole_derrd.files import checkpoint as checkpoint
    path = tmp_path / "DERRD-run.pth"
    checkpoint.save_checkpoint({"version": 1}, str(path))
    before = path.read_bytes()

    def crashing_save(state, stream):
        stream.write(b"half a checkpoint")
        raise Crash()

    monkeypatch.setattr(checkpoint.torch, "save", crashing_save)
    for exclusive in (False, True):
        with pytest.raises(Crash):
            checkpoint.save_checkpoint({"version": 2}, str(path), exclusive=exclusive)
        with pytest.raises(Crash):
            checkpoint.save_checkpoint({"version": 2}, str(tmp_path / "new.pth"), exclusive=exclusive)
    assert path.read_bytes() == before  # the previous complete file
    assert sorted(os.listdir(tmp_path)) == ["DERRD-run.pth"]  # no new, partial or temporary file
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"version": 1}


def test_a_run_interrupted_in_epoch_0_leaves_complete_files_only(
    workdir, fast_config, teacher_checkpoint, monkeypatch
):
    """Interrupted before any best model: no empty best-model file, a complete resume file."""
    import torch

    def crash(self, train_data, epoch_idx, *args, **kwargs):
        raise Crash()

    saved = workdir / "saved"
    monkeypatch.setattr(Trainer, "_train_epoch", crash)
    with pytest.raises(Crash):
        run_recbole_derrd("DERRD", "ml-100k", config_dict=fast_config(
            checkpoint_dir=str(saved), teacher_checkpoint=teacher_checkpoint))
    names = os.listdir(saved)
    assert len(names) == 1 and names[0].endswith(".resume.pth"), names
    state = torch.load(saved / names[0], weights_only=True)
    assert state["kind"] == "resume" and state["epoch"] == -1


def test_an_interrupted_teacher_leaves_no_stale_file(workdir, fast_config, monkeypatch):
    """A teacher training stopped after its first best model leaves '<cache>.training'; the
    next run that needs the teacher removes it, trains the teacher and caches it."""
    saved = workdir / "saved"
    config = fast_config(checkpoint_dir=str(saved), teacher_checkpoint=None, epochs=1,
                         teacher_config={"epochs": 3}, teacher_embedding_size=16)
    train_epoch = Trainer._train_epoch

    def crash_in_epoch_1(self, train_data, epoch_idx, *args, **kwargs):
        if epoch_idx == 1:
            raise Crash()
        return train_epoch(self, train_data, epoch_idx, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Trainer, "_train_epoch", crash_in_epoch_1)
        with pytest.raises(Crash):
            run_recbole_derrd("DERRD", "ml-100k", config_dict=dict(config))
    stale = [name for name in os.listdir(saved) if name.endswith(".training")]
    assert len(stale) == 1 and not [name for name in os.listdir(saved) if name.endswith(".pth")]

    result = run_recbole_derrd("DERRD", "ml-100k", config_dict=dict(config))
    names = os.listdir(saved)
    assert not [name for name in names if name.endswith((".training", ".tmp"))], names
    assert os.path.basename(result["teacher_checkpoint"]) in names
    assert stale[0].startswith(os.path.basename(result["teacher_checkpoint"]))


def test_a_second_run_waits_for_the_teacher_the_first_is_training(
    workdir, fast_config, teacher_checkpoint, monkeypatch
):
    """While another run holds the teacher's lock (it is training that teacher), a run that
    needs the same teacher waits, then reuses the file the first run wrote: trained once."""
    import fcntl
    import shutil
    import threading

    import recbole_derrd.pipeline.training
    from recbole.utils import init_seed

    from recbole_derrd import Config
    from recbole_derrd.data.dataset import create_dataset, data_preparation, split_fingerprint
    from recbole_derrd.pipeline.training import prepare_teacher
    from recbole_derrd.teacher.loading import build_teacher_config
    from recbole_derrd.teacher.cache import teacher_cache_path

    trained = []
    monkeypatch.setattr(recbole_derrd.pipeline.training, "train_teacher", lambda *args: trained.append(args))
    config = Config("DERRD", "ml-100k", config_dict=fast_config(
        checkpoint_dir=str(workdir / "saved"), teacher_checkpoint=None))
    init_seed(config["seed"], config["reproducibility"])
    train_dataset = data_preparation(config, create_dataset(config))[0].dataset
    path = teacher_cache_path(config, build_teacher_config(config), split_fingerprint(train_dataset))
    os.makedirs(os.path.dirname(path))

    outcome = {}
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first run, training the teacher

        def second_run():
            try:
                outcome["path"] = prepare_teacher(config, train_dataset)
            except BaseException as error:  # reported by the assertion below
                outcome["error"] = error

        second = threading.Thread(target=second_run)
        second.start()
        second.join(timeout=1.5)
        assert second.is_alive() and not trained  # waiting, not training its own copy
        shutil.copy(teacher_checkpoint, path)  # the first run's teacher is written...
        fcntl.flock(lock, fcntl.LOCK_UN)  # ...and its lock released
        second.join(timeout=60)
    assert outcome == {"path": path} and not trained


def test_files_are_written_with_the_usual_permissions(tmp_path):
    from recbole_derrd.files.checkpoint import save_checkpoint

    umask = os.umask(0o022)
    try:
        save_checkpoint({"a": 1}, str(tmp_path / "a.pth"))
    finally:
        os.umask(umask)
    assert os.stat(tmp_path / "a.pth").st_mode & 0o777 == 0o644


def test_files_read_on_the_plugins_behalf_are_not_unpickled(workdir, fast_config, monkeypatch):
    """A planted pickle passed as a resume file, a teacher or a checkpoint to export, or read
    by RecBole's NeuMF as pretrained tables where torch.load would unpickle it, runs nothing."""
    import torch

    from recbole_derrd.files.checkpoint import CheckpointError
    from recbole_derrd.files.export import export_student
    from recbole_derrd.settings.validation import ConfigValueError

    marker = workdir / "pwned"
    planted = workdir / "saved" / "DERRD-planted.resume.pth"
    plant_pickle(planted, marker)
    config = fast_config(checkpoint_dir=str(workdir / "saved"))
    with pytest.raises(CheckpointError, match="is not a resume file"):
        run_recbole_derrd("DERRD", "ml-100k", config_dict=dict(config), resume=str(planted))
    with pytest.raises(UntrustedCheckpointError, match="trust_checkpoint: True"):
        run_recbole_derrd("DERRD", "ml-100k", config_dict=dict(config, teacher_checkpoint=str(planted)))
    with pytest.raises(UntrustedCheckpointError, match="trust_checkpoint: True"):
        export_student(str(planted))
    monkeypatch.setattr(torch, "__version__", "2.5.1")  # torch.load unpickles by default
    with pytest.raises(ConfigValueError, match="use_pretrain: .*trust_checkpoint: True"):
        run_recbole_derrd("NeuMF", "ml-100k", config_dict={
            "gpu_id": "", "use_pretrain": True, "mf_pretrain_path": str(planted),
            "mlp_pretrain_path": str(planted), "checkpoint_dir": str(workdir / "saved")})
    assert not marker.exists()
    assert sorted(os.listdir(workdir / "saved")) == ["DERRD-planted.resume.pth"]


def test_a_stored_configuration_never_turns_on_recboles_caches():
    """A checkpoint's configuration names no cache to unpickle or to write."""
    from recbole_derrd.files.checkpoint import plain_config
    from recbole_derrd.config import Config, config_from_plain

    stored = plain_config(Config("BPR", "ml-100k", config_dict={"gpu_id": ""}))
    stored.update(save_dataset=True, dataset_save_path="/tmp/planted.pth", save_dataloaders=True,
                  dataloaders_save_path="/tmp/planted-loaders.pth", trust_checkpoint=True)
    config = config_from_plain(stored)
    assert not config["save_dataset"] and config["dataset_save_path"] is None
    assert not config["save_dataloaders"] and config["dataloaders_save_path"] is None
    assert config["trust_checkpoint"] is False


def test_a_user_error_in_a_spawned_process_is_reported_as_one(workdir, fast_config, teacher_checkpoint):
    """A user error found inside the processes of a multi-process run (here a dataset file
    RecBole would misread, read by every process) reaches the launcher as a UserError."""
    from recbole_derrd import run
    from recbole_derrd.errors import UserError

    from helpers import free_port

    folder = workdir / "data" / "mine"
    folder.mkdir(parents=True)
    (folder / "mine.inter").write_text(HEADER)
    config = fast_config(checkpoint_dir=str(workdir / "saved"), data_path=str(workdir / "data"),
                         dist_backend="gloo")
    with pytest.raises(UserError, match=r"process \d: Dataset file .*mine\.inter: the file has a header"):
        run("BPR", "mine", config_dict=config, nproc=2, port=free_port())


def test_two_runs_started_together_train_their_teacher_once(tmp_path):
    """Two run.py processes started at the same moment need the same on-demand teacher: one
    trains it, the other waits for it and reuses it."""
    import glob
    import subprocess
    import sys

    saved = tmp_path / "saved"
    flags = ["--model=DERRD", "--gpu_id=''", "--epochs=1", "--embedding_size=8",
             "--teacher_embedding_size=16", "--teacher_config={'epochs':3,'learning_rate':0.01}",
             "--rrd_topn=50", "--rrd_num_interesting=8", "--rrd_num_uninteresting=8",
             "--de_num_experts=4", "--eval_batch_size=4096000", "--show_progress=False",
             "--compare_student_alone=False", "--train_batch_size=8192", f"--checkpoint_dir={saved}"]
    runs = []
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        runs.append(subprocess.Popen(
            [sys.executable, os.path.join(REPO, "run_scripts", "run.py"), *flags],
            cwd=tmp_path / name, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    logs = "".join(open(path).read() for path in glob.glob(str(tmp_path / "*" / "log" / "*" / "*.log")))
    assert logs.count("Training the teacher") == 1
    assert logs.count("Reusing the teacher just trained") + logs.count("Reusing cached teacher") == 1
    teachers = [name for name in os.listdir(saved) if name.startswith("teacher-") and name.endswith(".pth")
                and ".top" not in name]
    assert len(teachers) == 1
