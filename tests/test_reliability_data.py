"""Reliability of the data (issue 37, items 4-5), from the user's side (run.py's exit status
and output): files that RecBole would read otherwise than a person does, and splits no run
can use, are refused with one line before anything is trained."""

import pytest

from helpers import one_error_line, run_script_in_process

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
ROWS = "".join(f"{user}\t{item}\t{(user + item) % 5 + 1}\t{880000000 + item}\n"
               for user in range(1, 41) for item in range(1, 61) if (user * 7 + item * 3) % 4 == 0)

#: run.py's flags for a small run of ``model`` on the dataset ``mine`` under ``data``.
FLAGS = ["--dataset=mine", "--gpu_id=''", "--epochs=1", "--embedding_size=8", "--state=ERROR",
         "--show_progress=False", "--teacher_embedding_size=8", "--teacher_config={'epochs':1}",
         "--rrd_topn=2", "--rrd_num_interesting=1", "--rrd_num_uninteresting=1",
         "--compare_student_alone=False"]

#: The columns loaded unless a test gives ``--load_col``.
LOAD_ALL = "--load_col={'inter':['user_id','item_id','rating','timestamp']}"


def run_on(workdir, content, *flags, model="BPR"):
    """run.py on ``content`` as ``mine.inter``: ``(status, stderr)``."""
    folder = workdir / "data" / "mine"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mine.inter").write_bytes(content if isinstance(content, bytes) else content.encode())
    if not any(flag.startswith("--load_col=") for flag in flags):
        flags += (LOAD_ALL,)
    status, _, stderr = run_script_in_process(
        "run.py", f"--model={model}", *FLAGS, f"--data_path={workdir / 'data'}",
        f"--checkpoint_dir={workdir / 'saved'}", *flags, cwd=workdir)
    return status, stderr


@pytest.mark.parametrize(
    "content, message",
    [
        (HEADER + '"7\t3\t4\t880000000\n8\t2\t4\t880000000\n' + ROWS,
         r"line 2: value '\"7' starts with a double quote"),
        (HEADER + ROWS + HEADER + ROWS, r"line \d+: a second header line"),
        (HEADER + "1\t2\tnan\t880000000\n" + ROWS, r"line 2: 'nan' in column 'rating:float' is not a finite number"),
        (HEADER + "1\t2\t3\tinf\n" + ROWS, r"line 2: 'inf' in column 'timestamp:float' is not a finite number"),
        (b"\xef\xbb\xbf" + (HEADER + ROWS).encode(), r"line 1: the file starts with a byte-order mark"),
        (HEADER + "1\t" + "x" * 200_000 + "\t3\t880000000\n" + ROWS, r"line 2: a value of 200,000 characters"),
        (HEADER + "NA\t2\t3\t880000000\n" + ROWS, r"line 2: 'NA' in column 'user_id:token' is read .* as a missing value"),
        (HEADER + "1\t2\r3\t4\t880000000\n" + ROWS, r"line 2: a carriage return inside the line"),
        (HEADER + "1\x00\t2\t3\t880000000\n" + ROWS, r"line 2: a NUL character"),
        (HEADER.replace("rating", "item_id") + ROWS, r"line 1: the header names column 'item_id' twice"),
        (HEADER + "1\t2\t \t880000000\n" + ROWS, r"line 2: ' ' in column 'rating:float' is not a number"),
    ],
    ids=["quote", "repeated header", "nan", "inf", "BOM", "huge field", "NA id", "carriage return",
         "NUL", "duplicate column", "blank number"],
)
def test_a_file_read_otherwise_than_written_is_one_line(workdir, nothing_trained, content, message):
    import re

    status, stderr = run_on(workdir, content)
    assert status == 2
    line = one_error_line(stderr)
    assert re.search(message, line), line
    assert "mine.inter" in line
    assert not (workdir / "saved").exists()


@pytest.mark.parametrize("model", ["BPR", "DERRD"])
def test_a_split_without_validation_is_refused_before_any_teacher(workdir, nothing_trained, model):
    """Two interactions per user: RecBole's 0.8/0.1/0.1 split leaves no validation."""
    rows = "".join(f"{user}\t{item}\t1\t{880000000 + item}\n"
                   for user in range(1, 31) for item in (user, user + 1))
    status, stderr = run_on(workdir, HEADER + rows, model=model)
    assert status == 2
    assert "leaves no validation interaction" in one_error_line(stderr)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--eval_args={'split':{'RS':[0.9,0.1,0.0]}}"], "leaves no test interaction"),
        (["--load_col={'inter':['user_id','item_id']}",
          "--eval_args={'split':{'LS':'valid_and_test'},'order':'TO'}"],
         "the time column 'timestamp' is not loaded"),
    ],
    ids=["no test", "time order without time"],
)
def test_a_split_no_run_can_use_is_refused(workdir, nothing_trained, flags, message):
    status, stderr = run_on(workdir, HEADER + ROWS, *flags)
    assert status == 2 and message in one_error_line(stderr)


def test_a_user_with_every_item_is_refused(workdir, nothing_trained):
    rows = ROWS + "".join(f"999\t{item}\t1\t880000000\n" for item in range(1, 61))
    status, stderr = run_on(workdir, HEADER + rows)
    line = one_error_line(stderr)
    assert status == 2 and "'999') interacted with every one of its 60 items" in line
    assert "user_inter_num_interval" in line


def test_a_separator_pandas_reads_as_a_regular_expression_is_refused(workdir, nothing_trained):
    content = (HEADER + ROWS).replace("\t", "||")
    status, stderr = run_on(workdir, content, "--field_separator=||")
    assert status == 2
    assert "field_separator '||' has several characters" in one_error_line(stderr)
