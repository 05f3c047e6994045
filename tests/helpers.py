"""Helpers shared by several test files (imported as ``helpers``: pytest puts ``tests/`` on
``sys.path``)."""

import hashlib
import math
import os
import socket

import torch


def directory_snapshot(path):
    """{relative path: sha256} of every file under ``path``."""
    snapshot = {}
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as handle:
                snapshot[os.path.relpath(full, path)] = hashlib.sha256(handle.read()).hexdigest()
    return snapshot


def brute_force_rrd(interesting, uninteresting):
    """-sum_k [s_k - log(sum_{l>=k} exp s_l + sum_j exp u_j)], term by term, in float64."""
    losses = []
    for user in range(interesting.shape[0]):
        s = interesting[user].tolist()
        u = uninteresting[user].tolist()
        total = 0.0
        for k in range(len(s)):
            denominator = sum(math.exp(v) for v in s[k:]) + sum(math.exp(v) for v in u)
            total -= s[k] - math.log(denominator)
        losses.append(total)
    return torch.tensor(losses, dtype=torch.float64)


def free_port():
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ScriptTimeout(Exception):
    """A script run by :func:`run_script_in_process` ran past its time limit (a hang)."""


def run_script_in_process(script, *args, cwd=None, timeout=120):
    """Run ``run_scripts/<script>`` as its command line would, in this process (no interpreter
    start-up): ``(exit status, stdout, stderr)``. A bug's exception is not caught by the
    script's boundary: it comes back as status 1 with its traceback in stderr, as Python
    prints it. ``timeout`` seconds (SIGALRM) stop a hang with :class:`ScriptTimeout`."""
    import contextlib
    import io
    import runpy
    import signal
    import sys
    import traceback

    def expire(signum, frame):
        raise ScriptTimeout(f"{script} {' '.join(args)} ran past {timeout} s")

    stdout, stderr = io.StringIO(), io.StringIO()
    argv, directory = sys.argv, os.getcwd()
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(timeout)
    status = 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        sys.argv = [script, *map(str, args)]
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                runpy.run_path(os.path.join(REPO, "run_scripts", script), run_name="__main__")
            except SystemExit as stop:
                status = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            except ScriptTimeout:
                raise
            except BaseException:  # a bug: the traceback Python would print
                status = 1
                stderr.write(traceback.format_exc())
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        sys.argv = argv
        os.chdir(directory)
    return status, stdout.getvalue(), stderr.getvalue()


def one_error_line(stderr):
    """The ``error: ...`` line of a user error's output: exactly one, and no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def write_small_dataset(data_path, name="small", users=40, items=60):
    """``<data_path>/<name>/<name>.inter``: a small dataset that trains in well under a second
    per epoch (each user has about a quarter of the items). Returns the file's path."""
    folder = os.path.join(str(data_path), name)
    os.makedirs(folder, exist_ok=True)
    rows = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    rows += [f"{user}\t{item}\t{(user + item) % 5 + 1}\t{880000000 + item}"
             for user in range(1, users + 1) for item in range(1, items + 1)
             if (user * 7 + item * 3) % 4 == 0]
    path = os.path.join(folder, f"{name}.inter")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(rows) + "\n")
    return path
