"""A user's mistake is one line, everywhere (issue 37, items 6-8), from the user's side: the
scripts' exit status and output. Configuration files, values RecBole chokes on, files and
folders, misspelt keys (command line, config files, teacher_config) and the other scripts
each end with exit 2 and one ``error:`` line; a bug keeps its traceback; a teacher worse than
its student is reported."""

import errno
import os

import pytest

from recbole.trainer import Trainer

from helpers import one_error_line, run_script_in_process, write_small_dataset

#: run.py on the small dataset, a BPR baseline, one tiny epoch.
SMALL = ["--model=BPR", "--dataset=small", "--gpu_id=''", "--embedding_size=8", "--epochs=1",
         "--state=ERROR", "--show_progress=False"]


@pytest.fixture
def small(workdir):
    """run.py's flags for the small dataset under the test's folder."""
    write_small_dataset(workdir / "data")
    (workdir / "list.yaml").write_text("- 1\n- 2\n")
    (workdir / "broken.yaml").write_text("epochs: [1\n")
    (workdir / "tagged.yaml").write_text(f"x: !!python/object/apply:os.system ['touch {workdir}/pwned']\n")
    (workdir / "misspelt.yaml").write_text("lamda_rrd: 0.1\n")
    (workdir / "a_file").write_text("")
    return SMALL + [f"--data_path={workdir / 'data'}", f"--checkpoint_dir={workdir / 'saved'}"]


def overridden(flags, overrides):
    """``flags`` with ``overrides`` (``--key=value`` replacing the same key) appended."""
    keys = {flag.split("=")[0] for flag in overrides if "=" in flag}
    return [flag for flag in flags if flag.split("=")[0] not in keys] + list(overrides)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--config_files={dir}/missing.yaml"], "Configuration file '{dir}/missing.yaml' does not exist"),
        (["--config_files={dir}/broken.yaml"], "Configuration file '{dir}/broken.yaml', line 2, column 1"),
        (["--config_files={dir}/list.yaml"], "must hold a mapping of keys to values"),
        (["--config_files={dir}/tagged.yaml"], "line 1, column 4: could not determine a constructor"),
        (["--seed=-1"], "seed must be an integer from 0 to 2**32 - 1, got -1"),
        (["--learning_rate=0.1", "--learning_rate=0.2"], "--learning_rate is given twice"),
        (["--weight_decay=nan"], "weight_decay must be a finite number"),
        (["--weight_decay=-1"], "weight_decay must be at least 0, got -1"),
        (["--dataset=../small"], "dataset must be a name"),
        (["--checkpoint_dir={dir}/a_file/saved"], "is under '{dir}/a_file', which is a file"),
        (["--metrics=['Recal']"], "There is no metric named 'Recal'"),
        (["--valid_metric=ndcg@20"], "valid_metric must be one of this run's metrics"),
        (["--eval_args={'split':{'RS':[0.8,0.2]}}"], "split RS must be three ratios"),
        (["--learner=adamm"], "learner must be one of adam"),
        (["--user_inter_num_interval=5"], "'5' is not an interval such as '[5,inf)'"),
        (["--train_neg_sample_args={'sample_num':-1}"], "sample_num must be a positive integer"),
        (["--epochs", "2"], "'--epochs' is not of the form --key=value"),
        (["--lamda_rrd=0.1"], "unknown key 'lamda_rrd' (on the command line; did you mean lambda_rrd?"),
        (["--config_files={dir}/misspelt.yaml"], "unknown key 'lamda_rrd' (in config file '{dir}/misspelt.yaml'"),
        (["--model=DERRD", "--teacher_config={'epoch':1}"],
         "unknown key 'epoch' (in teacher_config; did you mean epochs?"),
    ],
    ids=["missing yaml", "yaml syntax", "yaml list", "python tag", "negative seed", "key twice",
         "weight_decay nan", "weight_decay negative", "dataset path", "checkpoint_dir file",
         "unknown metric", "valid_metric", "eval_args", "learner", "interval", "negative samples",
         "space-separated value", "misspelt key", "misspelt key in a file", "teacher_config key"],
)
def test_a_mistake_is_one_line_and_stops_before_any_work(workdir, small, nothing_trained, flags, message):
    flags = [flag.replace("{dir}", str(workdir)) for flag in flags]
    status, _, stderr = run_script_in_process("run.py", *overridden(small, flags), cwd=workdir)
    assert status == 2
    assert message.replace("{dir}", str(workdir)) in one_error_line(stderr) + stderr
    assert not (workdir / "saved").exists() and not (workdir / "pwned").exists()


def test_the_escape_hatch_accepts_the_keys_of_a_users_model(workdir, small, monkeypatch):
    """custom_keys lists keys no package knows (a user's own model's); the run trains."""
    trained = []
    monkeypatch.setattr(Trainer, "_train_epoch", lambda *args, **kwargs: trained.append(1) or 0.0)
    status, _, stderr = run_script_in_process(
        "run.py", *small, "--my_layers=[8,4]", "--custom_keys=['my_layers']", cwd=workdir)
    assert status == 0, stderr
    assert trained


def test_sizes_that_cannot_be_allocated_are_one_line(workdir, small):
    status, _, stderr = run_script_in_process(
        "run.py", *overridden(small, ["--embedding_size=100000000000"]), cwd=workdir)
    assert status == 2
    assert "not enough memory (tried to allocate" in one_error_line(stderr)


def test_a_loss_that_is_nan_at_once_is_one_line(workdir, small):
    status, _, stderr = run_script_in_process("run.py", *small, "--learning_rate=1e30",
                                              "--train_batch_size=64", cwd=workdir)
    assert status == 2
    line = one_error_line(stderr)
    assert "the training diverged" in line or "too large for the model's float32" in line


@pytest.fixture
def full_disk(monkeypatch):
    """Every file the plugin writes goes to /dev/full: the kernel's 'No space left on device'."""
    import tempfile

    from recbole_derrd.files import writing

    make_temporary = tempfile.mkstemp

    def device_full_temporary(dir, prefix, suffix):
        handle, path = make_temporary(dir=dir, prefix=prefix, suffix=suffix)
        os.dup2(os.open("/dev/full", os.O_WRONLY), handle)
        return handle, path

    monkeypatch.setattr(writing.tempfile, "mkstemp", device_full_temporary)


def test_a_full_disk_names_the_file_and_leaves_nothing(derrd_run, workdir, full_disk):
    _, result = derrd_run
    status, stdout, stderr = run_script_in_process("export.py", result["checkpoint"],
                                                   f"--output={workdir / 'out' / 'student.pth'}")
    assert status == 2 and stdout == ""
    line = one_error_line(stderr)
    assert f"Cannot write '{workdir / 'out' / 'student.pth'}': No space left on device" in line
    assert os.listdir(workdir / "out") == []  # no partial file, no temporary file


def test_a_folder_that_cannot_be_written_is_one_line(derrd_run, workdir, monkeypatch):
    """A read-only export folder (simulated: the tests may run as root)."""
    from recbole_derrd.files import writing

    def read_only(dir, prefix, suffix):
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, prefix))

    monkeypatch.setattr(writing.tempfile, "mkstemp", read_only)
    _, result = derrd_run
    status, _, stderr = run_script_in_process("export.py", result["checkpoint"],
                                              f"--output={workdir / 'student.pth'}")
    assert status == 2
    assert "Permission denied" in one_error_line(stderr)


def test_run_hyper_mistakes_are_one_line_and_run_no_code(workdir, small):
    (workdir / "evil.test").write_text(
        f"learning_rate choice [__import__('os').system('touch {workdir}/pwned')]\n")
    for params, message in [(workdir / "missing.test", "Cannot read the parameter file"),
                            (workdir / "evil.test", "line 1: the choices")]:
        status, _, stderr = run_script_in_process(
            "run_hyper.py", *small, f"--params_file={params}", f"--output_file={workdir / 'r.md'}",
            cwd=workdir)
        assert status == 2 and message in one_error_line(stderr)
    assert not (workdir / "pwned").exists() and not (workdir / "r.md").exists()


def test_a_bug_keeps_its_traceback(workdir, small, monkeypatch):
    import recbole_derrd.settings.validation as validation

    def bug(checker):
        raise ValueError("a bug in the plugin")

    monkeypatch.setattr(validation, "check_recbole_values", bug)
    status, _, stderr = run_script_in_process("run.py", *small, cwd=workdir)
    assert status == 1
    assert "Traceback" in stderr and "ValueError: a bug in the plugin" in stderr


def test_a_teacher_worse_than_its_student_is_reported(workdir, small):
    """An on-demand teacher that learnt nothing (a learning rate of 1e-9): the final table
    shows its validation score and says it is the worse, and the run warns."""
    flags = [flag for flag in small if not flag.startswith(("--model", "--state", "--epochs"))]
    status, stdout, stderr = run_script_in_process(
        "run.py", "--model=DERRD", *flags, "--state=INFO", "--epochs=3", "--learning_rate=0.05",
        "--teacher_embedding_size=8", "--teacher_config={'epochs':1,'learning_rate':1e-9}",
        "--rrd_topn=5", "--rrd_num_interesting=2", "--rrd_num_uninteresting=2",
        "--compare_student_alone=False", "--train_batch_size=64", cwd=workdir)
    assert status == 0, stderr
    output = stdout + stderr
    assert "valid mrr@10 (best)" in output
    assert "(warning: the teacher is worse than the distilled student on validation)" in output
    assert "The teacher (BPR" in output and "is worse than the distilled student" in output
