"""Shared fixtures: every run happens in a temporary working directory (RecBole writes
./log, ./log_tensorboard and ./saved), with a clean command line (RecBole's Config parses
sys.argv), on the CPU, with tiny sizes.

Two fixed costs of every RecBole run are taken out of the suite (in this process only; the
runs the tests start as subprocesses pay them): RecBole's end-of-run environment table measures
CPU usage over a one-second sleep, and it reads the atomic files with pandas' Python parser
(about a second for ml-100k). The table's CPU figure is read without the sleep, and a file
read again, unchanged, with the same arguments, is a copy of the frame read the first time.
"""

import os
import sys

import pytest

#: Under pytest-xdist each worker is one process of the suite: torch's threads are shared
#: out among them (two processes each running torch on every core slow each other down
#: several-fold). Set before torch is imported, so the processes tests start inherit it.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // WORKERS))

#: The repository root on ``sys.path`` (once, for every test file): the scripts in
#: ``run_scripts/`` are imported as modules (``run_scripts.benchmark``...).
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

#: Small and fast settings for ml-100k runs (tests check behaviour, not quality).
FAST = {
    "gpu_id": "",
    "show_progress": False,
    "state": "ERROR",
    "eval_batch_size": 4096000,
    "epochs": 3,
    "embedding_size": 8,
    "teacher_embedding_size": 32,
    "teacher_config": {"epochs": 4, "learning_rate": 0.01},
    "de_num_experts": 4,
    "rrd_topn": 50,
    "rrd_num_interesting": 8,
    "rrd_num_uninteresting": 8,
    "learning_rate": 0.01,
    # no student alone trained next to every distillation: tests/test_student_baseline.py
    # turns it on where it is what a test checks
    "compare_student_alone": False,
    # 10 steps per epoch on ml-100k instead of 40: the tests check behaviour, not quality
    "train_batch_size": 8192,
}


@pytest.fixture(autouse=True, scope="session")
def without_fixed_run_costs():
    import pandas
    import psutil

    cpu_percent, read_csv = psutil.cpu_percent, pandas.read_csv
    frames = {}

    def cpu_percent_now(interval=None, percpu=False):
        return cpu_percent(interval=None, percpu=percpu)

    def read_csv_once(path, *args, **kwargs):
        if not isinstance(path, (str, os.PathLike)) or args:
            return read_csv(path, *args, **kwargs)
        status = os.stat(path)
        key = (os.path.abspath(path), status.st_mtime_ns, status.st_size, repr(sorted(kwargs.items())))
        if key not in frames:
            frames[key] = read_csv(path, **kwargs)
        return frames[key].copy()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(psutil, "cpu_percent", cpu_percent_now)
        patch.setattr(pandas, "read_csv", read_csv_once)
        yield


@pytest.fixture(autouse=True)
def clean_command_line(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["pytest"])


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def shared_saved(tmp_path_factory):
    """A checkpoint_dir shared by the session, so the on-demand teacher is trained once."""
    return str(tmp_path_factory.mktemp("shared") / "saved")


@pytest.fixture
def fast_config(shared_saved):
    def make(**overrides):
        config = dict(FAST, checkpoint_dir=shared_saved)
        config.update(overrides)
        return config

    return make


@pytest.fixture(scope="session")
def teacher_checkpoint(shared_saved, tmp_path_factory):
    """Path of a small BPR teacher on ml-100k (trained on demand, once per session)."""
    from recbole.utils import init_seed

    from recbole_derrd import Config
    from recbole_derrd.data.dataset import create_dataset, data_preparation
    from recbole_derrd.pipeline.training import prepare_teacher

    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("teacher_run"))
    argv, sys.argv = sys.argv, ["pytest"]
    try:
        config = Config("DERRD", "ml-100k", config_dict=dict(FAST, checkpoint_dir=shared_saved))
        init_seed(config["seed"], config["reproducibility"])  # RecBole's split is seeded
        train_data = data_preparation(config, create_dataset(config))[0]
        return prepare_teacher(config, train_data.dataset)
    finally:
        os.chdir(cwd)
        sys.argv = argv


@pytest.fixture(scope="session")
def derrd_run(teacher_checkpoint, tmp_path_factory):
    """One uninterrupted DERRD run on ml-100k (3 epochs, the session teacher), in its own
    working directory and checkpoint_dir: the reference of the export, resume and
    reproducibility tests. Returns ``(config_dict, result)``."""
    from recbole_derrd import run_recbole_derrd

    directory = tmp_path_factory.mktemp("derrd_run")
    config_dict = dict(FAST, checkpoint_dir=str(directory / "saved"),
                       teacher_checkpoint=teacher_checkpoint)
    cwd = os.getcwd()
    os.chdir(directory)
    argv, sys.argv = sys.argv, ["pytest"]
    try:
        return config_dict, run_recbole_derrd("DERRD", "ml-100k", config_dict=dict(config_dict))
    finally:
        os.chdir(cwd)
        sys.argv = argv


@pytest.fixture
def nothing_trained(monkeypatch):
    """Fails the test if the run trains anything (a model's epoch, or an on-demand teacher):
    the mistakes it checks must be refused before any work."""
    from recbole.trainer import Trainer

    import recbole_derrd.pipeline.training

    def refuse(*args, **kwargs):
        raise AssertionError("the run must stop before anything is trained")

    monkeypatch.setattr(Trainer, "_train_epoch", refuse)
    monkeypatch.setattr(recbole_derrd.pipeline.training, "train_teacher", refuse)
