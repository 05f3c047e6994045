"""Property-based tests of the whole surface (issue 37): whatever atomic file, command line or
YAML file a user gives, the run either goes on with what a person reads in it, or stops with
exit status 2 and one ``error:`` line; never a traceback, never a hang (every example runs
under a time limit), never a file outside the run's folders.

- Generated atomic files (random bytes, quotes, tabs, carriage returns, BOMs, NA-like values,
  nan, huge fields, missing and extra columns, repeated headers) go through the plugin's file
  check and RecBole's own dataset loading, in this process: refused with the file named, or
  read with the interactions, users, items and ratings a person reads in the file.
- Generated command lines and YAML files go through run.py (in this process, on a small
  dataset, one epoch): exit 0, or exit 2 with one line.
- A few of them go through run.py in its own process.

The suite runs a fixed, small set of examples (derandomized). To search further:
``PROPERTY_RANDOM=1 PROPERTY_EXAMPLES_FILES=2000 PROPERTY_EXAMPLES_COMMANDS=300 python -m pytest
tests/test_surface_properties.py``."""

import logging
import os
import signal
import subprocess
import sys
import tempfile

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from recbole_derrd.data.atomic_files import DatasetFileError, check_atomic_file  # noqa: E402

from helpers import REPO, one_error_line, run_script_in_process, write_small_dataset  # noqa: E402

HYPOTHESIS_SETTINGS = dict(
    deadline=None,
    derandomize=not os.environ.get("PROPERTY_RANDOM"),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
)


class Hang(Exception):
    pass


class time_limit:
    """``with time_limit(seconds):`` a hang raises :class:`Hang` (SIGALRM)."""

    def __init__(self, seconds):
        self.seconds = seconds

    def __enter__(self):
        def expire(signum, frame):
            raise Hang(f"ran past {self.seconds} s")

        self.previous = signal.signal(signal.SIGALRM, expire)
        signal.alarm(self.seconds)

    def __exit__(self, *exc_info):
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.previous)
        return False


# ----- generated atomic files -----

#: Values a person might write, by column type.
ORDINARY = {"token": st.sampled_from(["u1", "u2", "u3", "i1", "i2", "7", " 2", "x y"]),
            "float": st.sampled_from(["3", "3.5", "-1e3", " 2 ", "0", ""]),
            "token_seq": st.sampled_from(["a b", "a", "", "c  d"]),
            "float_seq": st.sampled_from(["1 2.5", "3", "", "1  2"])}

#: Values pandas may read otherwise than a person does (or not: a quote inside a value).
UNUSUAL = st.one_of(
    st.sampled_from(['"', '"x', 'x"y', '"x"', "NA", "null", "None", "nan", "inf", "", " ", "\r",
                     "\x00", "\ufeff", "é", "#", "\\", "a b", "\x0b", "\u2028", "١", "1_000"]),
    st.text(alphabet='ab1.-"\r \\\x00NAé', max_size=4),
    st.sampled_from(["i1", "u1", "0.5"]),
)


def ordinary(column):
    return ORDINARY[column.split(":")[1]]


#: Header columns: the ids, then optional columns of every type.
OPTIONAL_COLUMNS = ["rating:float", "timestamp:float", "tags:token_seq", "scores:float_seq", "note:token"]


@st.composite
def atomic_files(draw):
    """``(text, columns)`` of a generated ``.inter`` file: ordinary rows, some of which a
    few mutations make unusual (values, missing or extra ones, blank or repeated header lines,
    a BOM, a column named twice, Windows line ends, no final line end)."""
    columns = ["user_id:token", "item_id:token"] + draw(
        st.lists(st.sampled_from(OPTIONAL_COLUMNS), max_size=3, unique=True))
    header = "\t".join(columns)
    rows = [[draw(ordinary(column)) for column in columns] for _ in range(draw(st.integers(1, 6)))]
    lines = [header] + ["\t".join(row) for row in rows]
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        kind = draw(st.integers(0, 9))
        where = draw(st.integers(1, len(lines)))
        if kind == 0:
            lines.insert(where, header if draw(st.booleans()) else "")
        elif kind == 1:
            lines[0] = "\ufeff" + lines[0] if draw(st.booleans()) else lines[0] + "\t" + columns[-1]
        elif where < len(lines):
            values = lines[where].split("\t")
            if kind == 2:
                values = values[:-1] if draw(st.booleans()) else values + ["1"]
            elif kind == 3:
                values[draw(st.integers(0, len(values) - 1))] = "x" * 140_000  # over pandas' limit
            else:
                values[draw(st.integers(0, len(values) - 1))] = draw(UNUSUAL)
            lines[where] = "\t".join(values)
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    return ending.join(lines) + draw(st.sampled_from([ending, ""])), columns


def read_as_a_person(text, columns):
    """The data rows of ``text`` as a person reads them: lines, values split at the tabs."""
    rows = []
    for line in text.replace("\r\n", "\n").split("\n")[1:]:
        if "\t" in line or line.strip():
            rows.append(line.split("\t"))
    return rows


@pytest.fixture(scope="module")
def recbole_reader(tmp_path_factory):
    """RecBole's dataset loading of ``<folder>/fz/fz.inter`` with every column loaded."""
    from recbole.config import Config as RecBoleConfig
    from recbole.data.dataset import Dataset

    folder = tmp_path_factory.mktemp("atomic")
    (folder / "fz").mkdir()
    (folder / "fz" / "fz.inter").write_text("user_id:token\titem_id:token\nu1\ti1\n")
    config = RecBoleConfig("BPR", "fz", config_dict={
        "data_path": str(folder), "gpu_id": "", "load_col": None, "state": "CRITICAL",
        "user_inter_num_interval": None, "item_inter_num_interval": None})

    def load(path):
        config.final_config_dict["data_path"] = os.path.dirname(path)
        logging.disable(logging.WARNING)
        try:
            return Dataset(config)
        finally:
            logging.disable(logging.NOTSET)

    return load


@settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES_FILES", 80)), **HYPOTHESIS_SETTINGS)
@given(generated=atomic_files())
def test_an_atomic_file_is_read_as_written_or_refused_with_its_name(recbole_reader, generated):
    text, columns = generated
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "fz.inter")
        with open(path, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        check_as_a_person_reads(recbole_reader, path, text, columns)


def check_as_a_person_reads(recbole_reader, path, text, columns):
    """Refused with the file named, or read by RecBole with what a person reads in ``text``."""
    with time_limit(20):
        try:
            check_atomic_file(path, ["user_id", "item_id"])
        except DatasetFileError as error:
            assert f"Dataset file {path}" in str(error)
            hypothesis.event("refused: " + str(error).split(": ", 1)[1][:30])
            return
        hypothesis.event("read")
        dataset = recbole_reader(path)
    rows = read_as_a_person(text, columns)
    assert dataset.inter_num == len(rows)
    users = [dataset.id2token("user_id", int(user)) for user in dataset.inter_feat["user_id"]]
    assert sorted(users) == sorted(row[0] for row in rows)
    assert dataset.item_num - 1 == len({row[1] for row in rows})
    if "rating:float" in columns:
        index = columns.index("rating:float")
        ratings = dict(zip(range(len(rows)), dataset.inter_feat["rating"].tolist()))
        given = [float(row[index]) for row in rows if row[index] != ""]
        assert sorted(given) == sorted(value for i, value in ratings.items() if rows[i][index] != "")


# ----- generated command lines and YAML files -----

#: Arguments a run accepts (on the small dataset, with BPR).
VALID = [("learning_rate", "0.01"), ("seed", "7"), ("weight_decay", "0"),
         ("learner", "sgd"), ("topk", "[5,10]"), ("stopping_step", "3"), ("eval_batch_size", "256"),
         ("metrics", "['Recall','MRR']"), ("eval_step", "2"), ("neg_sampling", "None"),
         ("user_inter_num_interval", "[1,inf)"), ("train_neg_sample_args", "{'sample_num':2}")]

#: Keys of every kind: RecBole's, the plugin's, misspelt ones, made-up ones.
KEYS = [key for key, _ in VALID] + ["valid_metric", "eval_args", "lamda_rrd", "learning_rat",
                                    "epoch", "xyz", "custom_keys", "rrd_topn", "dataset", "loss_type"]

#: Command-line values: numbers, literals, words, broken literals.
WORDS = ["1", "0", "-1", "0.5", "nan", "inf", "1e400", "[1,2]", "[10]", "{'a':1}", "abc", "",
         "None", "True", "['Recall']", "{'split':{'RS':[0.8,0.1,0.1]}}", "[5,inf)", "adam", "[x"]

#: ``(key, value)`` pairs: mostly accepted ones, some of any key and value.
PAIRS = st.one_of(st.sampled_from(VALID), st.sampled_from(VALID),
                  st.tuples(st.sampled_from(KEYS), st.sampled_from(WORDS)))


@st.composite
def command_lines(draw):
    """Extra run.py arguments, and the text of a YAML file (None: no file)."""
    arguments = []
    for _ in range(draw(st.integers(0, 3))):
        key, value = draw(PAIRS)
        form = draw(st.integers(0, 14))
        if form == 0:
            arguments += [f"--{key}", value]
        elif form == 1:
            arguments.append(f"--{key}={value}={value}")
        else:
            arguments.append(f"--{key}={value}")
    yaml_text = draw(st.one_of(
        st.none(), st.none(),
        st.lists(PAIRS, max_size=2).map(lambda pairs: "\n".join(f"{k}: {v}" for k, v in pairs)),
        st.sampled_from(["- 1\n- 2\n", "epochs: [1\n", "x: !!python/name:os.system\n", "", "\xff\xfe"]),
    ))
    return arguments, yaml_text


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("small_data")
    write_small_dataset(folder)
    return folder


BASE = ["--model=BPR", "--dataset=small", "--gpu_id=''", "--embedding_size=4", "--epochs=1",
        "--state=ERROR", "--show_progress=False", "--train_batch_size=512"]


def outside_run_folders(root):
    """Files under ``root`` that are not the run's (log/, saved/, log_tensorboard/) or the
    test's own YAML file."""
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            relative = os.path.relpath(os.path.join(folder, name), root)
            if relative.split(os.sep)[0] not in ("log", "saved", "log_tensorboard", "user.yaml"):
                found.append(relative)
    return found


@settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES_COMMANDS", 20)), **HYPOTHESIS_SETTINGS)
@given(generated=command_lines())
def test_any_command_line_exits_0_or_2_with_one_line(small_data, generated):
    arguments, yaml_text = generated
    with tempfile.TemporaryDirectory() as workdir:
        run_and_check(small_data, workdir, arguments, yaml_text)


def run_and_check(small_data, workdir, arguments, yaml_text):
    """run.py with ``arguments`` (and a config file of ``yaml_text``) in ``workdir``: exit 0,
    or exit 2 with one line, and only the run's folders written."""
    extra = []
    if yaml_text is not None:
        with open(os.path.join(workdir, "user.yaml"), "wb") as handle:
            handle.write(yaml_text.encode("utf-8", "surrogateescape") if yaml_text != "\xff\xfe"
                         else b"\xff\xfe")
        extra.append(f"--config_files={os.path.join(workdir, 'user.yaml')}")
    status, _, stderr = run_script_in_process(
        "run.py", *BASE, f"--data_path={small_data}", f"--checkpoint_dir={workdir}/saved",
        *arguments, *extra, cwd=workdir, timeout=120)
    assert status in (0, 2), stderr
    hypothesis.event(f"exit {status} " + (stderr.split("error: ")[-1][:90] if status else ""))
    if status == 2:
        one_error_line(stderr)
    else:
        assert "Traceback" not in stderr
    assert outside_run_folders(workdir) == []


def test_mistakes_in_their_own_process(small_data, tmp_path):
    """run.py processes: a misspelt key and a dataset file with a BOM are one line each,
    exit 2, within the time limit."""
    bom = tmp_path / "data" / "bom"
    bom.mkdir(parents=True)
    (bom / "bom.inter").write_bytes(b"\xef\xbb\xbf" + open(
        os.path.join(small_data, "small", "small.inter"), "rb").read())
    cases = {
        "unknown key 'lamda_rrd' (on the command line; did you mean lambda_rrd?": ["--lamda_rrd=0.1"],
        "byte-order mark": ["--dataset=bom", f"--data_path={tmp_path / 'data'}"],
    }
    processes = {}
    for message, flags in cases.items():
        keys = {flag.split("=")[0] for flag in flags}
        arguments = [flag for flag in BASE + [f"--data_path={small_data}"]
                     if flag.split("=")[0] not in keys] + flags
        processes[message] = subprocess.Popen(
            [sys.executable, os.path.join(REPO, "run_scripts", "run.py"), *arguments],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for message, process in processes.items():
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 2, stderr
        one_error_line(stderr)
        assert message in stderr
    assert not (tmp_path / "saved").exists()
