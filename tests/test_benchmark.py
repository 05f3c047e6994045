"""Issue 4: the benchmark runs end to end on a tiny configuration, writes a well-formed table,
CSV and plot, and resumes without redoing finished cells; the hyperparameter search runs."""

import ast
import csv
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from recbole_derrd.benchmark import arguments, methods, popularity_shift, training
from recbole_derrd.benchmark import summary as summarize
from recbole_derrd.benchmark.cells import read_cells
from recbole_derrd.benchmark.table import Table
from recbole_derrd.benchmark.table import main as benchmark_main
from recbole_derrd.benchmark.training import interrupted_run
from recbole_derrd.errors import UserError
from recbole_derrd.files.checkpoint import read_checkpoint, save_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def saved_cells(path):
    """A table's cells as its files hold them, per-user metrics as lists."""
    cells = read_cells(str(path))[0]
    return {key: dict(cell, test_per_user={metric: values.tolist() for metric, values in cell["test_per_user"].items()})
            if "test_per_user" in cell else cell for key, cell in cells.items()}


TINY = """
embedding_size: 8
teacher_embedding_size: 16
rrd_topn: 50
rrd_num_interesting: 8
rrd_num_uninteresting: 8
de_num_experts: 4
learning_rate: 0.01
train_batch_size: 8192
"""


def tiny_rrd_benchmark(workdir, inference_repeats):
    """A one-seed, one-epoch benchmark of the student alone and RRD: its flags."""
    (workdir / "tiny.yaml").write_text(TINY)
    return ["--dataset=ml-100k", "--backbone=BPR", "--sizes=8", "--teacher_size=16", "--seeds=1",
            "--epochs=1", "--methods=student,RRD", f"--inference_repeats={inference_repeats}",
            f"--config_files={workdir / 'tiny.yaml'}", f"--results={workdir / 'results'}",
            f"--work={workdir / 'work'}"]


def test_a_table_refuses_cells_trained_under_other_options(workdir):
    """A table's cells all train under the same --config_files and --epochs: a command with
    other ones is refused before any work, and the table's files are left as they were (else a
    capped table's teacher would be reported as a converged table's)."""
    argv = tiny_rrd_benchmark(workdir, inference_repeats=1)
    folder = workdir / "results" / "ml-100k"
    folder.mkdir(parents=True)
    cells = folder / "BPR-recbole.cells.json"
    cells.write_text('{"teacher|16|2020": {"method": "teacher", "seed": 2020, "size": 16}}')
    Table(arguments.parse_args(argv))  # a table without a record takes this command's
    record = json.loads((folder / "BPR-recbole.training.json").read_text())
    assert record == {"config_files": [str(workdir / "tiny.yaml")], "epochs": 1}
    Table(arguments.parse_args(argv))  # the same options: accepted
    saved = cells.read_bytes(), (folder / "BPR-recbole.training.json").read_bytes()
    (workdir / "extra.yaml").write_text("")
    for other in (["--epochs=2"], ["--config_files="], [f"--config_files={workdir / 'tiny.yaml'} extra.yaml"]):
        with pytest.raises(UserError, match="holds cells trained with .*--epochs=1.*move its files"):
            benchmark_main(argv + other)
        assert (cells.read_bytes(), (folder / "BPR-recbole.training.json").read_bytes()) == saved
    assert not (workdir / "work").exists()  # nothing trained


def test_benchmark_end_to_end_and_resume(workdir, monkeypatch):
    argv = tiny_rrd_benchmark(workdir, inference_repeats=2)
    benchmark_main(argv)
    folder = workdir / "results" / "ml-100k"
    table = (folder / "BPR-recbole.md").read_text()
    results_table, significance = table.split("\n## Significance")
    rows = [line for line in results_table.splitlines() if line.startswith("| ") and "---" not in line]
    # the paired test of the distiller against the student alone, over the same test users
    assert "| RRD vs student | ndcg@10 |" in significance and "| RRD vs student | recall@20 |" in significance
    assert [row.split("|")[1].strip() for row in rows] == ["method", "teacher", "student", "RRD"]
    header = [cell.strip() for cell in rows[0].split("|")[1:-1]]
    assert "ndcg@10" in header and "recall@20" in header and "inference" in header
    assert all(len(row.split("|")) == len(rows[0].split("|")) for row in rows)
    # one seed measures no spread: the table says so instead of showing a zero deviation
    assert "±" not in table and "one seed (2020)" in table and "torch thread(s)" in table
    assert "--epochs=1 " in table and "--methods=teacher,student,RRD" in table  # the real command
    with open(folder / "BPR-recbole.csv") as handle:
        records = list(csv.DictReader(handle))
    assert [record["method"] for record in records] == ["teacher", "student", "RRD"]
    teacher = records[0]
    assert float(teacher["ndcg@10_mean"]) > 0 and float(teacher["inference_seconds"]) > 0
    assert teacher["ndcg@10_std"] == ""
    assert int(records[1]["parameters"]) == (944 + 1683) * 8 == int(records[2]["parameters"])
    assert float(records[2]["ndcg@10_ratio_to_teacher"]) == pytest.approx(
        float(records[2]["ndcg@10_mean"]) / float(teacher["ndcg@10_mean"]))
    # training cost against the student alone of the same seed, from the cells' own times
    timed = {cell["method"]: cell["train_seconds"]
             for cell in saved_cells(folder / "BPR-recbole.cells.json").values()}
    assert float(records[2]["train_seconds_ratio_to_student"]) == pytest.approx(timed["RRD"] / timed["student"])
    assert records[1]["train_seconds_ratio_to_student"] == "1.0"
    rrd_row = [cell.strip() for cell in rows[3].split("|")[1:-1]]
    assert rrd_row[header.index("train s vs student")] == f"{timed['RRD'] / timed['student']:.1f}x"
    png = (folder / "BPR-recbole.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    cells = saved_cells(folder / "BPR-recbole.cells.json")
    # a distiller's cell at the defaults is keyed (and labelled) by the weights it ran with
    default = methods.default_weights("RRD")
    rrd_key = methods.cell_key("RRD", 8, 2020, default)
    assert set(cells) == {"teacher|16|2020", "student|8|2020", rrd_key} and rrd_key.endswith("|lambda_rrd=0.003")
    assert cells[rrd_key]["weights"] == default == cells[rrd_key]["setting"]
    # a new cell records the early-stopping rule it was trained under (older cells have none)
    assert cells[rrd_key]["early_stopping_rule"] == training.EARLY_STOPPING_RULE
    saved_config = read_checkpoint(cells[rrd_key]["checkpoint"])["config"]
    assert saved_config["lambda_rrd"] == default["lambda_rrd"] and not saved_config["use_de"]

    # a second run finds every cell done: nothing is trained again
    import recbole_derrd

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(recbole_derrd, "run_recbole_derrd", must_not_train)
    benchmark_main(argv)
    assert saved_cells(folder / "BPR-recbole.cells.json") == cells

    # the summary reads a table run without --tune as the defaults' evidence
    summarize.main(["--tables=ml-100k:BPR:recbole", "--seeds=1", "--sizes=8", "--teacher_size=16",
                    f"--results={workdir / 'results'}"])
    summary = (workdir / "results" / "summary.md").read_text()
    assert "| ml-100k (recbole, defaults) | 1 | ndcg@10 |" in summary
    rrd, student = cells[rrd_key], cells["student|8|2020"]
    gain = 100 * (rrd["valid_score"] / student["valid_score"] - 1)
    assert (f"| ml-100k (recbole, defaults) | RRD defaults (lambda_rrd=0.003) | the table's | "
            f"{rrd['valid_score']:.4f} ({gain:+.1f}%) |") in summary
    assert f"| RRD | lambda_rrd = 0.003 | {gain:+.1f}% | {gain:+.1f}% |" in summary  # the defaults evidence

    # --auto_rows: RRD with its weight chosen by the plugin's own search beside the defaults
    # (the table's learner settings), nothing else trained again; the summary shows it against
    # the same student alone
    monkeypatch.undo()
    trained = []
    real_run = recbole_derrd.run_recbole_derrd

    def counted_run(model, *args, **kwargs):
        trained.append(model)
        return real_run(model, *args, **kwargs)

    monkeypatch.setattr(recbole_derrd, "run_recbole_derrd", counted_run)
    benchmark_main(argv + ["--auto_rows"])
    assert trained == ["DERRD"]
    cells = saved_cells(folder / "BPR-recbole.cells.json")
    auto_key = methods.cell_key("RRD", 8, 2020, {"lambda_rrd": "auto"})
    automatic = cells[auto_key]
    assert automatic["weight_search"]["chosen"]["lambda_rrd"] in (0, 0.001, 0.01, 0.1)
    assert automatic["weights"] == automatic["weight_search"]["chosen"]
    summarize.main(["--tables=ml-100k:BPR:recbole", "--seeds=1", "--sizes=8", "--teacher_size=16",
                    f"--results={workdir / 'results'}"])
    summary = (workdir / "results" / "summary.md").read_text()
    gain = 100 * (automatic["valid_score"] / student["valid_score"] - 1)
    assert (f"| ml-100k (recbole, defaults) | RRD auto | the table's | "
            f"{automatic['valid_score']:.4f} ({gain:+.1f}%) |") in summary


def test_a_changed_default_never_relabels_an_old_cell(workdir, monkeypatch):
    """--other_weights runs more weights beside the defaults, reported apart; when a default
    changes, the cells run at the former one move out of the table, which reports the cells
    run at the new default only."""
    argv = tiny_rrd_benchmark(workdir, inference_repeats=1)
    benchmark_main(argv + ["--other_weights=RRD:lambda_rrd=0.05"])
    folder = workdir / "results" / "ml-100k"
    cells = saved_cells(folder / "BPR-recbole.cells.json")
    old_key, other_key = "RRD|8|2020|lambda_rrd=0.003", "RRD|8|2020|lambda_rrd=0.05"
    assert set(cells) == {"teacher|16|2020", "student|8|2020", old_key, other_key}
    assert read_checkpoint(cells[other_key]["checkpoint"])["config"]["lambda_rrd"] == 0.05
    table, others = (folder / "BPR-recbole.md").read_text().split("## Other weights on this split")
    assert '--other_weights="RRD:lambda_rrd=0.05"' in table
    rrd_row = next(line for line in table.splitlines() if line.startswith("| RRD |"))
    assert rrd_row.endswith("| lambda_rrd=0.003 |")
    other_row = next(line for line in others.splitlines() if line.startswith("| RRD | 8 | lambda_rrd=0.05 | 1 |"))
    student = cells["student|8|2020"]
    test_gain = 100 * (cells[other_key]["test"]["ndcg@10"] / student["test"]["ndcg@10"] - 1)
    valid_gain = 100 * (cells[other_key]["valid_score"] / student["valid_score"] - 1)
    assert other_row.startswith(f"| RRD | 8 | lambda_rrd=0.05 | 1 | {cells[other_key]['test']['ndcg@10']:.4f} | "
                                f"{test_gain:+.1f}% |") and other_row.endswith(f"| {valid_gain:+.1f}% |")

    # the default becomes 0.05: the table now reports the 0.05 cell as the defaults, trains
    # nothing, and shows the 0.003 cell apart
    defaults = methods.plugin_defaults

    def changed(method, backbone="BPR"):
        original = defaults(method, backbone)
        return dict(original, lambda_rrd=0.05) if method in methods.DISTILLERS else original

    monkeypatch.setattr(methods, "plugin_defaults", changed)
    import recbole_derrd

    monkeypatch.setattr(recbole_derrd, "run_recbole_derrd", lambda *args, **kwargs: pytest.fail("trained"))
    benchmark_main(argv)
    table, others = (folder / "BPR-recbole.md").read_text().split("## Other weights on this split")
    rrd_row = next(line for line in table.splitlines() if line.startswith("| RRD |"))
    assert rrd_row.endswith("| lambda_rrd=0.05 |") and f"{cells[other_key]['test']['ndcg@10']:.4f}" in rrd_row
    assert f"| RRD | 8 | lambda_rrd=0.003 | 1 | {cells[old_key]['test']['ndcg@10']:.4f} |" in others
    with pytest.raises(UserError, match="--other_weights: RRD's weights are"):  # a weight the method does not have
        arguments.parse_args(argv + ["--other_weights=RRD:lambda_de=0.1"])


class Stop(Exception):
    """Stands for a kill or a crash in the middle of a cell's training."""


def test_an_interrupted_cell_continues_from_its_last_epoch(workdir, monkeypatch):
    """A cell stopped in training continues from its resume file when the benchmark runs
    again, and ends exactly as the same cell run without a stop; a resume file of another
    weight or seed is never taken."""
    import recbole_derrd
    from recbole.trainer import Trainer

    from recbole_derrd.settings.keys import rebuilt_parameters

    argv = [flag if flag != "--epochs=1" else "--epochs=4" for flag in tiny_rrd_benchmark(workdir, 1)]
    cells_file = workdir / "results" / "ml-100k" / "BPR-recbole.cells.json"
    key = methods.cell_key("RRD", 8, 2020, methods.default_weights("RRD"))
    train_epoch = Trainer._train_epoch

    def stopping(self, train_data, epoch_idx, *args, **kwargs):
        if epoch_idx == 2 and self.config["model"] == "DERRD":
            raise Stop("stopped in RRD's epoch 2")
        return train_epoch(self, train_data, epoch_idx, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_train_epoch", stopping)
        with pytest.raises(Stop):
            benchmark_main(argv)
    cells = saved_cells(cells_file)
    assert "student|8|2020" in cells and key not in cells
    [interrupted] = (workdir / "work").rglob("DERRD-*.resume.pth")
    interrupted = str(interrupted)
    state = read_checkpoint(interrupted)
    assert state["epoch"] == 1 and not state.get("finished")

    # only this cell's own settings take the file
    parameters = rebuilt_parameters(state["config"])
    assert interrupted_run("DERRD", "ml-100k", [], parameters) == interrupted
    assert interrupted_run("DERRD", "ml-100k", [], dict(parameters, lambda_rrd=0.05)) is None
    assert interrupted_run("DERRD", "ml-100k", [], dict(parameters, seed=2021)) is None
    assert interrupted_run("DERRD", "ml-100k", [], dict(parameters, lambda_rrd="auto")) is None
    # nor a file without the run's training record (the cell would report the later epochs only)
    assert len(state["epoch_seconds"]) == 2
    save_checkpoint({name: value for name, value in state.items() if name != "epoch_seconds"}, interrupted)
    assert interrupted_run("DERRD", "ml-100k", [], parameters) is None
    save_checkpoint(state, interrupted)

    resumes = []
    run = recbole_derrd.run_recbole_derrd

    def recording(*args, **kwargs):
        resumes.append(kwargs.get("resume"))
        return run(*args, **kwargs)

    monkeypatch.setattr(recbole_derrd, "run_recbole_derrd", recording)
    benchmark_main(argv)
    resumed = saved_cells(cells_file)[key]
    assert resumes == [interrupted] and resumed["resumed_from"] == interrupted
    assert resumed["epochs"] == 4  # the epochs before the stop are counted too
    assert resumed["train_seconds"] > sum(state["epoch_seconds"])
    assert read_checkpoint(interrupted)["finished"]

    # the same cell trained from the start (its finished file is not taken) ends the same
    cells = saved_cells(cells_file)
    del cells[key]
    cells_file.write_text(json.dumps(cells))
    benchmark_main(argv)
    fresh = saved_cells(cells_file)[key]
    assert resumes[-1] is None and fresh["resumed_from"] is None and fresh["epochs"] == 4
    assert fresh["test"] == resumed["test"] and fresh["valid_score"] == resumed["valid_score"]
    assert fresh["test_per_user"] == resumed["test_per_user"]


def test_a_cell_another_process_trains_is_waited_for_not_trained_again(workdir, monkeypatch):
    """Two processes of one benchmark reach the same cell: the second waits for the first's
    lock on it, then finds it done (it neither trains it again nor continues the first one's
    live resume file)."""
    import recbole_derrd

    args = arguments.parse_args(tiny_rrd_benchmark(workdir, inference_repeats=1))
    first, second = Table(args), Table(args)
    key = methods.cell_key("student", 8, 2020)
    monkeypatch.setattr(recbole_derrd, "run_recbole_derrd", lambda *args, **kwargs: pytest.fail("trained twice"))
    locked = threading.Event()

    def first_process():
        with first.runner.cell_lock(key, 2020):
            locked.set()
            time.sleep(0.5)  # training
            first.cells[key] = {"test": {"ndcg@10": 0.25}, "checkpoint": "student.pth"}
            first.store.save()

    thread = threading.Thread(target=first_process)
    thread.start()
    locked.wait()
    second.runner.run_missing_cell("student", 8, 2020, {})
    thread.join()
    assert second.cells[key] == {"test": {"ndcg@10": 0.25}, "checkpoint": "student.pth"}


def test_a_process_saving_its_cell_keeps_the_cells_another_saved_meanwhile(workdir):
    """Two processes of one command (e.g. one --run_seeds each): the second saves its own new
    cell while holding the copy of a cell it read before the first replaced it (a retrained
    teacher, say). The file keeps the first process's cell, not the second's stale copy."""
    args = arguments.parse_args(tiny_rrd_benchmark(workdir, inference_repeats=1))
    teacher = methods.cell_key("teacher", 16, 2021)
    setup = Table(args)
    setup.cells[teacher] = {"test": {"ndcg@10": 0.25}, "checkpoint": "removed.pth"}
    setup.store.save()
    first, second = Table(args), Table(args)  # both read the old teacher
    first.cells[teacher] = {"test": {"ndcg@10": 0.25}, "checkpoint": "retrained.pth"}
    first.store.save()
    student = methods.cell_key("student", 8, 2020)
    second.cells[student] = {"test": {"ndcg@10": 0.5}, "checkpoint": "student.pth"}
    second.store.save()
    with open(second.cells_file) as handle:
        saved = json.load(handle)
    assert saved[teacher]["checkpoint"] == "retrained.pth"
    assert saved[student]["checkpoint"] == "student.pth"
    assert second.cells == saved  # and the second process now holds the first's cell too


def two_processes_of_one_command(workdir, options, searched):
    """Two Table objects of the tiny RRD command with ``options`` (two processes of it), the
    seed-2020 teacher and the searches of the ``searched`` methods saved as done (the last
    trial of each the best). Returns both and the teacher's (empty) checkpoint file."""
    args = arguments.parse_args(tiny_rrd_benchmark(workdir, inference_repeats=1) + options)
    first, second = Table(args), Table(args)
    teacher_file = workdir / "teacher.pth"
    teacher_file.write_bytes(b"")
    second.cells[methods.cell_key("teacher", 16, 2020)] = {"checkpoint": str(teacher_file)}
    for method in searched:
        for index, setting in enumerate(second.plan.settings(method, 2020, 8)):
            second.cells[methods.cell_key(method, 8, 2020, setting)] = {
                "setting": setting, "valid_score": 0.1 * index, "valid_score_bigger": True}
    second.store.save()
    return first, second, teacher_file


def record_training(table, teacher_file, monkeypatch, after=lambda key: None):
    """Replace ``table``'s training with a record of the cells it trains, in order (returned);
    ``after(key)`` runs after each. Every recorded cell scores 0.5 on validation and test."""
    trained = []

    def run_cell(method, model, parameters, seed, size, setting=None):
        key = methods.cell_key(method, size, seed, setting)
        trained.append(key)
        after(key)
        return {"test": {"ndcg@10": 0.5}, "setting": setting, "valid_score": 0.5, "valid_score_bigger": True,
                "checkpoint": str(teacher_file)}

    monkeypatch.setattr(table.runner, "run_cell", run_cell)
    monkeypatch.setattr(table.runner, "time_inference", lambda seed: None)
    return trained


def other_process_trains(table, key, seed, until, result, seconds=30):
    """Start a thread standing for another process of the command: it holds cell ``key``'s
    lock (at ``seed``) until the event ``until`` is set (at most ``seconds``), then saves
    ``result`` as the cell. Returns the thread, once it holds the lock, and a list that receives
    whether ``until`` was set in time (the other process was still training meanwhile)."""
    locked, waited = threading.Event(), []

    def train():
        with table.runner.cell_lock(key, seed) as held:
            assert held
            locked.set()
            waited.append(until.wait(timeout=seconds))
            table.store.reload()
            table.cells[key] = result
            table.store.save()

    thread = threading.Thread(target=train)
    thread.start()
    locked.wait()
    return thread, waited


def test_the_same_command_in_two_processes_shares_a_search(workdir, monkeypatch):
    """A trial another process is training is left to it: this process trains the method's
    other trials, then the next method that does not take settings from it, and waits for the
    other process's trial only when nothing else is left (RD's search must finish before a
    method tuned on top of it could start; CD's does not depend on it)."""
    first, second, teacher_file = two_processes_of_one_command(
        workdir, ["--tune", "--methods=student,RD,CD"], searched=("student",))
    rd_trials, cd_trials = (second.plan.settings(method, 2020, 8) for method in ("RD", "CD"))
    busy = methods.cell_key("RD", 8, 2020, rd_trials[0])
    others_done = threading.Event()
    trained = record_training(second, teacher_file, monkeypatch,
                              after=lambda key: len(trained) == 5 and others_done.set())
    # still training when this process has trained everything else (a process that waited for
    # this cell before going on to CD would never get there)
    thread, waited = other_process_trains(first, busy, 2020, others_done, {
        "test": {"ndcg@10": 0.25}, "setting": rd_trials[0], "valid_score": 0.25, "checkpoint": "first.pth"})
    assert second.runner.run_missing_cell("RD", 8, 2020, rd_trials[0], wait=False) is False
    assert trained == []  # a busy cell returns at once, untrained
    second.runner.run_jobs(second.runner.method_jobs([2020], [8], ["student", "RD", "CD"]))
    thread.join()
    assert waited == [True]
    assert trained == [methods.cell_key("RD", 8, 2020, setting) for setting in rd_trials[1:]] + [
        methods.cell_key("CD", 8, 2020, setting) for setting in cd_trials]
    assert second.cells[busy]["checkpoint"] == "first.pth"  # the other process's, not trained twice
    assert second.plan.chosen_setting("RD", 8) == rd_trials[1]


def test_a_default_row_another_process_trains_does_not_hold_up_the_next_seed(workdir, monkeypatch):
    """A row beside the search (the defaults, ``auto``) that another process of the same command
    is training is left to it: this process trains the other rows, goes on to the next seed, and
    waits for the busy row only when nothing else is left (it used to wait for each such row in
    turn)."""
    first, second, teacher_file = two_processes_of_one_command(
        workdir, ["--tune", "--seeds=2"], searched=("student", "RRD"))
    rows = [(method, setting) for method, setting in second.plan.default_rows(8) if method in second.args.methods]
    assert [method for method, _ in rows] == ["RRD", "RRD"]  # the defaults, and auto
    busy = methods.cell_key("RRD", 8, 2020, rows[0][1])
    next_seed_done = threading.Event()
    trained = record_training(second, teacher_file, monkeypatch,
                              after=lambda key: key.startswith("RRD|8|2021") and next_seed_done.set())
    thread, waited = other_process_trains(  # still training when seed 2021 is done
        first, busy, 2020, next_seed_done, {"test": {"ndcg@10": 0.25}, "setting": rows[0][1], "checkpoint": "first.pth"})
    second.runner.run()
    thread.join()
    assert waited == [True]
    chosen = {method: second.plan.chosen_setting(method, 8) for method in ("student", "RRD")}
    assert trained == [methods.cell_key("RRD", 8, 2020, rows[1][1]), methods.cell_key("teacher", 16, 2021),
                       methods.cell_key("student", 8, 2021, chosen["student"]),
                       methods.cell_key("RRD", 8, 2021, chosen["RRD"])]
    assert second.cells[busy]["checkpoint"] == "first.pth"  # the other process's, not trained twice


def test_a_trial_another_process_trains_does_not_hold_up_the_next_seeds_known_cells(workdir, monkeypatch):
    """The first seed's last search trial is another process's: this process trains the
    search's other trials, then the next seed's teacher and the cells whose settings are known
    (the student alone's, searched already), and waits only when nothing else is left; once the
    search is done, the first seed comes first again (RRD-topK takes RRD's weight)."""
    first, second, teacher_file = two_processes_of_one_command(
        workdir, ["--tune", "--seeds=2", "--methods=teacher,student,RRD,RRD-topK"],
        searched=("student",))
    rrd_trials = second.plan.settings("RRD", 2020, 8)
    student = second.plan.chosen_setting("student", 8)
    busy = methods.cell_key("RRD", 8, 2020, rrd_trials[-1])
    known_cells_done = threading.Event()
    trained = record_training(
        second, teacher_file, monkeypatch,
        after=lambda key: key == methods.cell_key("student", 8, 2021, student) and known_cells_done.set())
    thread, waited = other_process_trains(  # still training the last trial meanwhile
        first, busy, 2020, known_cells_done, {"test": {"ndcg@10": 0.25}, "setting": rrd_trials[-1],
                                              "valid_score": 0.9, "valid_score_bigger": True, "checkpoint": "first.pth"})
    second.runner.run_jobs(second.runner.method_jobs([2020, 2021], [8], ["teacher", "student", "RRD", "RRD-topK"]))
    thread.join()
    assert waited == [True]
    assert second.plan.chosen_setting("RRD", 8) == rrd_trials[-1]  # the other process's trial won
    assert trained == [methods.cell_key("RRD", 8, 2020, setting) for setting in rrd_trials[:-1]] + [
        methods.cell_key("teacher", 16, 2021), methods.cell_key("student", 8, 2021, student)] + [
        methods.cell_key(method, 8, seed, second.plan.settings(method, seed, 8)[0])
        for seed, method in ((2020, "RRD-topK"), (2021, "RRD"), (2021, "RRD-topK"))]
    assert second.cells[busy]["checkpoint"] == "first.pth"  # not trained twice


def test_the_auto_rows_wait_for_the_student_alones_search(workdir, monkeypatch):
    """The ``auto`` rows take the student alone's searched learner settings: while another
    process trains that search's last trial (2 s here), this process trains the search's other
    trials, then waits: it neither trains the rows beside the search before their settings are
    known nor drops the ``auto`` row."""
    first, second, teacher_file = two_processes_of_one_command(
        workdir, ["--tune", "--methods=teacher,student,RRD"], searched=())
    student_trials = second.plan.settings("student", 2020, 8)
    busy = methods.cell_key("student", 8, 2020, student_trials[-1])
    rrd_trained = threading.Event()  # set while the other process trains: RRD ran before its settings were known
    trained = record_training(second, teacher_file, monkeypatch,
                              after=lambda key: key.startswith("RRD|") and rrd_trained.set())
    thread, waited = other_process_trains(
        first, busy, 2020, rrd_trained, {"test": {"ndcg@10": 0.25}, "setting": student_trials[-1],
                                         "valid_score": 0.9, "valid_score_bigger": True, "checkpoint": "first.pth"},
        seconds=2)
    second.runner.run()
    thread.join()
    assert waited == [False]
    learner = {key: student_trials[-1][key] for key in methods.LEARNER_KEYS}  # the other's trial won
    rows = [setting for method, setting in second.plan.default_rows(8) if method == "RRD"]
    assert [methods.is_automatic(setting) for setting in rows] == [False, True]
    assert rows[1] == dict(learner, **methods.AUTO_ROWS["RRD"])
    rrd_trials = second.plan.settings("RRD", 2020, 8)
    assert trained == [methods.cell_key("student", 8, 2020, setting) for setting in student_trials[:-1]] + [
        methods.cell_key("RRD", 8, 2020, setting) for setting in rrd_trials + rows]


def test_a_later_seed_before_the_first_seeds_search_is_refused(workdir, monkeypatch):
    """--run_seeds of a later seed while the first seed's searches have not run: nothing to
    wait for, so the run stops with the reason instead of training a guess."""
    args = arguments.parse_args(tiny_rrd_benchmark(workdir, inference_repeats=1) + ["--tune", "--seeds=2"])
    table = Table(args)
    monkeypatch.setattr(table.runner, "run_cell", lambda *args, **kwargs: pytest.fail("trained"))
    with pytest.raises(RuntimeError, match="student's search has finished 0 of its 3 trials"):
        table.runner.run_jobs(table.runner.method_jobs([2021], [8], ["student", "RRD"]))


def test_a_search_is_chosen_only_once_its_grid_has_finished(workdir):
    """The tuned setting is the best validation score of the whole grid, ties to the earlier
    trial; before every trial has finished there is nothing to choose (a partial grid's best
    would be reported, or run at the other seeds, as the tuned setting)."""
    argv = tiny_rrd_benchmark(workdir, inference_repeats=1) + ["--tune", "--seeds=2"]
    table = Table(arguments.parse_args(argv))
    grid = table.plan.settings("student", 2020, 8)
    assert len(grid) == len(methods.TUNING_GRIDS["student"]) >= 3
    scores = [0.30, 0.35, 0.35] + [0.1] * (len(grid) - 3)
    for index, (setting, score) in enumerate(zip(grid, scores)):
        if index == len(grid) - 1:  # the last trial still running: the best so far is not chosen
            with pytest.raises(RuntimeError, match=f"finished {index} of its {len(grid)} trials"):
                table.plan.chosen_setting("student", 8)
        table.cells[methods.cell_key("student", 8, 2020, setting)] = {
            "setting": setting, "valid_score": score, "valid_score_bigger": True}
    assert table.plan.chosen_setting("student", 8) == grid[1]  # the tie goes to the earlier trial
    # the later seeds run that choice
    assert table.plan.settings("student", 2021, 8) == [grid[1]]


def test_method_settings_run_every_cell_of_the_method_and_name_it(workdir):
    """--method_settings sets a distiller's other keys in all its cells (their config and their
    names): a table without them never reports those cells as its defaults."""
    argv = tiny_rrd_benchmark(workdir, inference_repeats=1)
    benchmark_main(argv + ["--method_settings=RRD:rrd_topn=30,rrd_num_interesting=4"])
    folder = workdir / "results" / "ml-100k"
    cells = saved_cells(folder / "BPR-recbole.cells.json")
    key = "RRD|8|2020|lambda_rrd=0.003,rrd_num_interesting=4,rrd_topn=30"
    assert set(cells) == {"teacher|16|2020", "student|8|2020", key}
    config = read_checkpoint(cells[key]["checkpoint"])["config"]
    assert config["rrd_topn"] == 30 and config["rrd_num_interesting"] == 4
    table = (folder / "BPR-recbole.md").read_text()
    assert '--method_settings="RRD:rrd_topn=30,rrd_num_interesting=4"' in table
    rrd_row = next(line for line in table.splitlines() if line.startswith("| RRD |"))
    assert rrd_row.endswith("| lambda_rrd=0.003,rrd_num_interesting=4,rrd_topn=30 |")
    # the same table without them: that cell is not its defaults' (reported apart, nothing trained
    # here: --report_only)
    benchmark_main(argv + ["--report_only"])
    table, others = (folder / "BPR-recbole.md").read_text().split("## Other weights on this split")
    assert not any(line.startswith("| RRD |") for line in table.splitlines())
    assert "| RRD | 8 | lambda_rrd=0.003,rrd_num_interesting=4,rrd_topn=30 | 1 |" in others
    assert methods.cells_method_settings(cells) == {"RRD": {"rrd_num_interesting": 4, "rrd_topn": 30}}
    for bad, message in (("RRD:lambda_rrd=0.1", "is a loss weight"), ("RRD:unkd_topn=4", "not a key of RRD"),
                         ("RRD:learning_rate=0.1", "not a key of RRD"), ("UnKD:unkd_topn=4", "not a distiller among"),
                         ("RRD:use_de=True", "tell the methods apart"), ("RRD:rrd_topn", "not key=value"),
                         ("RRD:rrd_rank_temperature=x", "not a number")):
        with pytest.raises(ValueError, match=message):
            arguments.parse_method_settings(bad, ["teacher", "student", "RRD"])
    assert arguments.parse_method_settings("RRD:rrd_topn=30;RRD:rrd_num_interesting=4", ["RRD"]) == {
        "RRD": {"rrd_topn": 30, "rrd_num_interesting": 4}}
    with pytest.raises(ValueError, match="htd_flat is True or False"):
        arguments.parse_method_settings("HTD:htd_flat=1", ["HTD"])
    # a float key's value is a float however it is written (YAML reads 1e-3 as a string)
    assert arguments.parse_method_settings("HTD:htd_weight_floor=1e-3", ["HTD"]) == {"HTD": {"htd_weight_floor": 0.001}}


def test_a_teacher_of_another_model_teaches_the_tables_students(workdir):
    """--teacher_backbone: the teacher is that model (its checkpoint, the distillers' teacher and
    the inference timing all load it), the table's files and title name it, and its command
    says so; a table of the same students under their own model's teacher stays apart."""
    argv = tiny_rrd_benchmark(workdir, inference_repeats=1) + ["--teacher_backbone=LightGCN"]
    benchmark_main(argv)
    folder = workdir / "results" / "ml-100k"
    cells = saved_cells(folder / "BPR-from-LightGCN-recbole.cells.json")
    teacher = read_checkpoint(cells["teacher|16|2020"]["checkpoint"])
    assert teacher["config"]["model"] == "LightGCN"
    rrd = next(cell for key, cell in cells.items() if key.startswith("RRD|"))
    assert rrd["config"]["student_model"] == "BPR"
    assert read_checkpoint(rrd["checkpoint"])["config"]["teacher_checkpoint"] == cells["teacher|16|2020"]["checkpoint"]
    assert all("inference_seconds" in cell for cell in cells.values())  # the teacher timed as LightGCN
    report = (folder / "BPR-from-LightGCN-recbole.md").read_text()
    assert report.startswith("# ml-100k, BPR backbone (LightGCN teacher), recbole protocol")
    assert "--teacher_backbone=LightGCN" in report.splitlines()[2]
    assert not (folder / "BPR-recbole.cells.json").exists()
    args = arguments.parse_args(tiny_rrd_benchmark(workdir, inference_repeats=1))
    assert args.teacher_backbone == "BPR" and Table(args).name == "BPR-recbole"
    # the summary shows it apart from the headline, beside the same students of a BPR teacher
    benchmark_main(tiny_rrd_benchmark(workdir, inference_repeats=1))
    own = saved_cells(folder / "BPR-recbole.cells.json")
    summarize.main(["--tables=ml-100k:BPR:recbole,ml-100k:BPR:recbole:LightGCN", "--seeds=1", "--sizes=8",
                    "--teacher_size=16", f"--results={workdir / 'results'}"])
    summary = (workdir / "results" / "summary.md").read_text()
    headline = summary.split("<!-- headline:start -->")[1].split("<!-- headline:end -->")[0]
    assert "| ml-100k (recbole, defaults) | 1 | ndcg@10 |" in headline and "LightGCN" not in headline
    section = summary.split("## A teacher of another model")[1].split("\n## ")[0]
    for teacher, table_cells in (("LightGCN", cells), ("BPR", own)):
        for metric in ("ndcg@10", "recall@20"):
            gap = 100 * (table_cells["teacher|16|2020"]["test"][metric] / table_cells["student|8|2020"]["test"][metric] - 1)
            assert f"| ml-100k (recbole, defaults) | {teacher} 16-d | 1/1/- | {metric} | " in section
            assert f" | {gap:+.1f}% | " in section.split(f"| {teacher} 16-d | 1/1/- | {metric} |")[1].splitlines()[0]


def test_search_only_runs_no_row_beside_the_search(workdir):
    """--search_only: with --tune, the first seed runs the grid and nothing beside it (no
    defaults or ``auto`` row); without it those rows wait for the student alone's search."""
    argv = tiny_rrd_benchmark(workdir, inference_repeats=1) + ["--tune", "--seeds=2"]
    assert Table(arguments.parse_args(argv + ["--search_only"])).plan.beside_search_cells(2020) == []
    with pytest.raises(RuntimeError, match="student's search has finished 0 of its 3 trials"):
        Table(arguments.parse_args(argv)).plan.beside_search_cells(2020)


def test_later_distillers_and_recall_by_popularity_group(workdir):
    """UnKD and HTD run when named, and --popularity_groups adds each row's test Recall@20 per
    item-popularity group, the mean of its cells' own reports."""
    (workdir / "tiny.yaml").write_text(TINY + "htd_num_groups: 4\n")
    benchmark_main(["--dataset=ml-100k", "--backbone=BPR", "--sizes=8", "--teacher_size=16", "--seeds=1",
                    "--epochs=1", "--methods=teacher,student,UnKD,HTD", "--inference_repeats=1",
                    "--popularity_groups=3", f"--config_files={workdir / 'tiny.yaml'}",
                    f"--results={workdir / 'results'}", f"--work={workdir / 'work'}"])
    folder = workdir / "results" / "ml-100k"
    cells = saved_cells(folder / "BPR-recbole.cells.json")
    cells = {cell["method"]: cell for cell in cells.values()}  # one cell per method
    assert {cells["UnKD"]["model"], cells["HTD"]["model"]} == {"UnKD", "HTD"}
    table = (folder / "BPR-recbole.md").read_text()
    assert "--methods=teacher,student,UnKD,HTD" in table and "--popularity_groups=3" in table
    section = table.split("## Recall@20 by item-popularity group")[1]
    rows = {line.split("|")[1].strip(): line for line in section.splitlines()
            if line.startswith("| ") and "---" not in line and not line.startswith("| method")}
    assert list(rows) == ["teacher", "student", "UnKD", "HTD"]
    for method, line in rows.items():
        cell = cells[method]
        popularity = cell["popularity"]
        assert popularity["groups"] == 3 and sum(popularity["interaction_share"]) == pytest.approx(1.0)
        shown = [float(value) for value in line.split("|")[4:-1]]
        assert shown == pytest.approx([round(value, 4) for value in popularity["recall@20"]], abs=1e-4)
    assert "UnKD vs student" in table and "HTD vs student" in table  # their paired tests

    # the summary's later-distillers table: each method's test metric and its paired difference
    # to the student alone, from the same per-user values (DE-RRD did not run: "-")
    summarize.main(["--tables=ml-100k:BPR:recbole", "--seeds=1", "--sizes=8", "--teacher_size=16",
                    f"--results={workdir / 'results'}"])
    summary = (workdir / "results" / "summary.md").read_text()
    later = summary.split("## The later distillers: HTD and UnKD")[1].split("\n## ")[0]
    row = next(line for line in later.splitlines() if line.startswith("| ml-100k (recbole, defaults) | 1/1/1 | ndcg@10 |"))
    columns = [value.strip() for value in row.split("|")[2:-1]]  # after the seeds column
    student_users = cells["student"]["test_per_user"]["ndcg@10"]
    for method, value_column, versus_column in (("HTD", 4, 5), ("UnKD", 7, 8)):
        assert columns[value_column] == f"{cells[method]['test']['ndcg@10']:.4f}"
        differences = [a - b for a, b in zip(cells[method]["test_per_user"]["ndcg@10"], student_users)]
        relative = 100 * sum(differences) / sum(student_users)
        # one seed: no interval over seeds, the users-only p
        assert columns[versus_column].startswith(f"{relative:+.1f}% (one seed, no interval over seeds; users p = ")
    assert columns[3] == "-" and columns[6] == "-"  # DE-RRD, and HTD against it

    # re-evaluated from their checkpoints, on both splits, the models score what their cells
    # recorded: the same rankings, now also on validation
    shifted = popularity_shift.main(["--dataset=ml-100k", "--backbone=BPR", "--sizes=8", "--teacher_size=16", "--seeds=1",
                          "--methods=teacher,student,UnKD,HTD", "--popularity_groups=3", "--epochs=1",
                          f"--config_files={workdir / 'tiny.yaml'}", f"--results={workdir / 'results'}",
                          f"--work={workdir / 'work'}"])
    assert sorted(shifted) == sorted((method, 2020) for method in rows)
    for (method, _), splits in shifted.items():
        cell = cells[method]
        assert splits["test"]["overall"] == pytest.approx(cell["test"]["recall@20"], abs=1e-4)
        assert splits["valid"]["overall"] == pytest.approx(cell["valid"]["recall@20"], abs=1e-4)
        assert splits["test"]["recall"] == pytest.approx(cell["popularity"]["recall@20"], nan_ok=True)
        assert splits["valid"]["recommended_popularity"] > 0
    positives = {(split, splits[split]["positive_popularity"]) for splits in shifted.values() for split in splits}
    assert len(positives) == 2  # each split's positives, whichever model ranks them
    report = (folder / "BPR-recbole.popularity-shift.md").read_text()
    assert "| UnKD (1 seed) | valid |" in report and "| HTD | 1 | test |" in report
    weights = {method: methods.setting_label(cells[method]["weights"]) for method in ("UnKD", "HTD")}
    assert f"Settings of the table's cells: UnKD {weights['UnKD']}; HTD {weights['HTD']}." in report


def test_hyperparameter_search_runs_on_the_validation_split(workdir):
    # the teacher trained on demand for one epoch too, no student alone beside each trial
    (workdir / "tiny.yaml").write_text(TINY + "epochs: 1\ngpu_id: ''\nshow_progress: False\n"
                                       "teacher_config: {epochs: 1}\ncompare_student_alone: False\n"
                                       "train_batch_size: 8192\n")
    (workdir / "space.test").write_text("lambda_rrd choice [0.01,0.1]\n")
    output = workdir / "hyper.md"
    completed = subprocess.run(
        [sys.executable, os.path.join(REPO, "run_scripts", "run_hyper.py"), "--model=DERRD",
         "--dataset=ml-100k", "--use_de=False",
         f"--config_files={workdir / 'tiny.yaml'} {os.path.join(REPO, 'properties/experiments/protocol_recbole.yaml')}",
         f"--params_file={workdir / 'space.test'}", f"--output_file={output}"],
        cwd=workdir, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = output.read_text()
    assert report.count("| lambda_rrd:") == 2 and "Best (validation)" in report
    assert "ndcg@10" in report


def test_tuned_benchmark_and_its_summary(workdir):
    """--tune: three trials per searched method at the first seed, the chosen setting at the
    second; the summary's headline and defaults evidence are read from those cells."""
    # auto rows searching two candidates per weight (fewer trials than the plugin's four)
    (workdir / "tiny.yaml").write_text(TINY + "weight_search_values: {lambda_rrd: [0, 0.01], lambda_de: [0, 0.01]}\n")
    common = [f"--results={workdir / 'results'}", "--seeds=2", "--sizes=8", "--teacher_size=16"]
    benchmark_main(["--dataset=ml-100k", "--backbone=BPR", "--epochs=1", "--methods=student,RRD,DE-RRD",
                    "--tune", "--inference_repeats=1", f"--config_files={workdir / 'tiny.yaml'}",
                    f"--work={workdir / 'work'}"] + common)
    cells = saved_cells(workdir / "results" / "ml-100k" / "BPR-recbole.cells.json")
    # every model of both seeds timed (each seed's timings saved before the next is timed)
    assert all(cell["inference_seconds"] > 0 for cell in cells.values())
    # the first seed's trials (every trial carries the student's learner settings)
    first = {key for key in cells if "|2020|" in key and "auto" not in key and "learning_rate" in key}
    second = {key for key in cells if "|2021" in key}
    # 3 student + 3 RRD + 3 DE-RRD trials at the first seed, plus the teacher and the two
    # default rows; one chosen setting per method at the second seed
    assert len([key for key in first if key.startswith("student|")]) == 3
    assert len([key for key in first if key.startswith("RRD|")]) == 3
    assert len([key for key in first if key.startswith("DE-RRD|")]) == 3
    # the plugin's defaults, as a user gets them, keyed by the default weights they ran with
    defaults = {methods.cell_key(method, 8, 2020, methods.default_weights(method)) for method in ("RRD", "DE-RRD")}
    assert defaults == {"RRD|8|2020|lambda_rrd=0.003", "DE-RRD|8|2020|lambda_de=0.01,lambda_rrd=0.003"}
    assert defaults <= set(cells) and all(cells[key]["weights"] == cells[key]["setting"] for key in defaults)
    # and with the plugin's own weight search (auto): the chosen weights are among its candidates
    automatic = next(cell for key, cell in cells.items() if key.startswith("DE-RRD|8|2020|lambda_de=auto,"))
    student = max((cell for key, cell in cells.items() if key.startswith("student|8|2020|")),
                  key=lambda cell: cell["valid_score"])
    assert automatic["setting"]["learning_rate"] == student["setting"]["learning_rate"]
    assert automatic["weight_search"]["trial_count"] >= 2
    assert automatic["weight_search"]["chosen"]["lambda_rrd"] in (0, 0.001, 0.01, 0.1)
    # the cell records the weights the search chose (the ones it trained with), not "auto"
    assert automatic["weights"] == {key: automatic["weight_search"]["chosen"][key] for key in ("lambda_de", "lambda_rrd")}
    rrd_auto = next(cell for key, cell in cells.items() if key.startswith("RRD|8|2020|") and "auto" in key)
    assert rrd_auto["weight_search"]["chosen"]["lambda_rrd"] in (0, 0.001, 0.01, 0.1)
    assert sorted(key.split("|")[0] for key in second) == ["DE-RRD", "RRD", "student", "teacher"]
    rrd_trials = [cells[key] for key in first if key.startswith("RRD|")]
    best = max(rrd_trials, key=lambda cell: cell["valid_score"])
    chosen = next(cell for key, cell in cells.items() if key.startswith("RRD|8|2021"))
    assert chosen["setting"] == best["setting"]  # the second seed runs the validation winner
    derrd = next(cell for key, cell in cells.items() if key.startswith("DE-RRD|8|2021"))
    assert derrd["setting"]["lambda_rrd"] == best["setting"]["lambda_rrd"]
    # a row run with the former 30-epoch trials is kept in the reports, labelled, not run again
    short_setting = dict(rrd_auto["setting"], **methods.SHORT_TRIALS)
    short_key = methods.cell_key("RRD", 8, 2020, short_setting)
    cells[short_key] = dict(rrd_auto, setting=short_setting)
    # a cell at a former default weight: shown apart, against the seed's chosen student alone
    former = {"lambda_rrd": 0.05}
    cells[methods.cell_key("RRD", 8, 2020, former)] = dict(rrd_trials[0], setting=former)
    (workdir / "results" / "ml-100k" / "BPR-recbole.cells.json").write_text(json.dumps(cells))
    benchmark_main(["--dataset=ml-100k", "--backbone=BPR", "--methods=student,RRD,DE-RRD", "--tune",
                    "--report_only", "--epochs=1", f"--config_files={workdir / 'tiny.yaml'}",
                    f"--work={workdir / 'work'}"] + common)
    report = (workdir / "results" / "ml-100k" / "BPR-recbole.md").read_text()
    other_rows = [line for line in report.split("## Other weights on this split")[1].split("\n## ")[0].splitlines()
                  if line.startswith("| RRD") or line.startswith("| DE-RRD")]
    student_2020 = max((cell for key, cell in cells.items() if key.startswith("student|8|2020|")),
                       key=lambda cell: cell["valid_score"])  # the chosen student alone
    gain = 100 * (rrd_trials[0]["test"]["ndcg@10"] / student_2020["test"]["ndcg@10"] - 1)
    assert other_rows == [other_rows[0]] and "| lambda_rrd=0.05 | 1 |" in other_rows[0]  # not the trials
    assert f"| {gain:+.1f}% |" in other_rows[0]
    summarize.main(["--tables=ml-100k:BPR:recbole"] + common)
    summary = (workdir / "results" / "summary.md").read_text()
    assert "| ml-100k (recbole) | RRD auto (30-epoch trials) |" in summary
    assert "| ml-100k (recbole) | RRD auto |" in summary
    assert "| ml-100k (recbole) | 2/2 | ndcg@10 |" in summary and "| ml-100k (recbole) | 2/2 | recall@20 |" in summary
    for value in ("0.001", "0.003", "0.01"):
        assert f"| RRD | lambda_rrd = {value} |" in summary
    assert "listed as ties): RRD lambda_rrd = " in summary
    # defaults and auto, each against the student alone with the same learner settings
    assert "| ml-100k (recbole) | RRD defaults (lambda_rrd=0.003) | learning_rate=0.001,weight_decay=0 |" in summary
    assert "| ml-100k (recbole) | DE-RRD auto |" in summary
    table = (workdir / "results" / "ml-100k" / "BPR-recbole.md").read_text()
    assert "| DE-RRD (auto: lambda_de=" in table and "| RRD (auto: lambda_rrd=" in table
    assert " trials of 30 epochs, " in table
    assert "--seeds=2 --tune " in table  # the command that rebuilds it

    # a table of another backbone gets its own headline and defaults evidence, and its rows
    # in the shared sections carry the backbone's name (here the same cells filed as NeuMF's)
    folder = workdir / "results" / "ml-100k"
    for suffix in ("cells.json", "per_user.npz", "training.json"):
        (folder / f"NeuMF-recbole.{suffix}").write_bytes((folder / f"BPR-recbole.{suffix}").read_bytes())
    summarize.main(["--tables=ml-100k:BPR:recbole,ml-100k:NeuMF:recbole"] + common)
    summary = (workdir / "results" / "summary.md").read_text()
    # each backbone's headline, up to the next section or the README's headline marker after the last
    bpr, neumf = (summary.split(f"## Results across datasets ({backbone} backbone")[1].split("\n## ")[0]
                  .split("\n<!-- headline:end")[0] for backbone in ("BPR", "NeuMF"))
    assert "| ml-100k (recbole) | 2/2 | ndcg@10 |" in bpr and "NeuMF" not in bpr
    assert neumf.replace("NeuMF ml-100k", "ml-100k").split("\n", 1)[1] == bpr.split("\n", 1)[1]
    assert "| NeuMF ml-100k (recbole) | RRD auto |" in summary
    for backbone in ("BPR", "NeuMF"):
        evidence = summary.split(f"every dataset ({backbone} students)")[1].split("\n## ")[0]
        assert "| RRD | lambda_rrd = 0.01 |" in evidence


def test_best_worst_case_lists_ties_and_prefers_values_run_everywhere():
    values = [(0.001, (3, -4.1)), (0.003, (3, -3.01)), (0.01, (3, -2.94)), (0.1, (2, 5.0))]
    # 0.1 ran on 2 of 3 datasets only; 0.003 is within TIE_POINTS of 0.01's worst case
    assert summarize.best_worst_case("RRD", values, 3) == "RRD lambda_rrd = 0.003 or 0.01 (-2.9%)"
    assert summarize.best_worst_case("RRD", [(0.1, (2, 5.0)), (0.01, (2, 1.0))], 3) == \
        "RRD lambda_rrd = 0.1 (+5.0%, 2 of 3 datasets)"


@pytest.mark.parametrize("method", ["RRD", "DE-RRD", "RD"])
def test_a_tables_defaults_are_what_a_run_with_its_backbone_gets(method):
    """A NeuMF student has its own default weights (``properties/model/DERRD/NeuMF.yaml``): the
    NeuMF table's "defaults" cells and rows use them, as ``run.py --student_model=NeuMF`` does,
    not BPR's."""
    from recbole_derrd import Config

    model, extra = methods.DISTILLERS[method]
    for backbone in ("BPR", "NeuMF"):
        weights = methods.default_weights(method, backbone)
        config = Config(model, "ml-100k", config_dict=dict(extra, student_model=backbone))
        assert weights and weights == {key: config[key] for key in weights}
        assert methods.is_plugin_default(method, weights, backbone)
    if method in ("RD", "RRD"):  # no NeuMF weight of their own (RRD: the cross-dataset lambda_rrd)
        assert methods.default_weights(method, "NeuMF") == methods.default_weights(method, "BPR")
    else:
        neumf = methods.default_weights(method, "NeuMF")
        assert neumf != methods.default_weights(method, "BPR")
        assert not methods.is_plugin_default(method, neumf, "BPR")


def test_a_row_run_at_fewer_seeds_is_compared_with_the_student_of_its_own_seeds(workdir):
    """A distiller that has run at one of the table's seeds is compared with the student alone
    and the teacher of that seed, not with their means over seeds it has not run."""
    table = Table(arguments.parse_args(tiny_rrd_benchmark(workdir, 1) + ["--seeds=2"]))
    scores = {("teacher", 2020): 0.28, ("teacher", 2021): 0.32, ("student", 2020): 0.20,
              ("student", 2021): 0.30, ("RRD", 2020): 0.21}
    # seed 2021 timed on a machine twice as fast: RRD costs 3x its own seed's student
    seconds = {("teacher", 2020): 40.0, ("teacher", 2021): 10.0, ("student", 2020): 20.0,
               ("student", 2021): 10.0, ("RRD", 2020): 60.0}
    for (method, seed), score in scores.items():
        size = 16 if method == "teacher" else 8
        weights = methods.default_weights(method)
        table.cells[methods.cell_key(method, size, seed, weights)] = {
            "method": method, "seed": seed, "setting": weights, "weights": weights,
            "test": {"ndcg@10": score, "recall@20": score}, "valid_score": score,
            "parameters": 1000, "epochs": 1, "train_seconds": seconds[(method, seed)]}
    table.report.write()
    markdown = (workdir / "results" / "ml-100k" / "BPR-recbole.md").read_text()
    rrd_row = next(line for line in markdown.splitlines() if line.startswith("| RRD | 8 | 1 |"))
    # 0.21 against seed 2020's 0.20, not against the two seeds' mean 0.25 (-16.0%); and against
    # seed 2020's teacher, 0.28 (0.750), not the two seeds' mean 0.30 (0.700)
    assert "| 0.750 | +5.0% |" in rrd_row and "-16.0%" not in rrd_row
    # its training time against its seed's student alone (3.0x), not the two seeds' mean 15 s;
    # the teacher's, per seed (2x and 1x)
    assert "| 60 | 3.0x |" in rrd_row
    teacher_row = next(line for line in markdown.splitlines() if line.startswith("| teacher | 16 | 2 |"))
    assert "| 25 | 1.5x |" in teacher_row
    # the two-seed student against the two-seed teacher: 0.25 / 0.30
    student_row = next(line for line in markdown.splitlines() if line.startswith("| student | 8 | 2 |"))
    assert "| 0.833 |" in student_row
    rows = {row["method"]: row for row in csv.DictReader(open(workdir / "results" / "ml-100k" / "BPR-recbole.csv"))}
    assert float(rows["RRD"]["ndcg@10_ratio_to_teacher"]) == pytest.approx(0.75)
    assert float(rows["student"]["ndcg@10_ratio_to_teacher"]) == pytest.approx(0.25 / 0.30)


def test_a_teacher_retrained_without_reproducing_it_does_not_replace_the_reported_one(workdir):
    """A seed's teacher checkpoint is gone (the benchmark resumed on another machine) and a
    distiller of that seed still has to run: the teacher is trained again. On the same machine
    it reproduces and simply replaces the cell; where it does not (here: the stored cell is made
    to differ, as another CPU's rounding would), the table keeps reporting the teacher the
    seed's earlier cells learnt from, the new cell learns from the retrained one, and the report
    says both."""
    argv = tiny_rrd_benchmark(workdir, inference_repeats=1)
    benchmark_main(argv)
    cells_path = workdir / "results" / "ml-100k" / "BPR-recbole.cells.json"
    cells = saved_cells(cells_path)
    teacher_key = next(key for key, cell in cells.items() if cell["method"] == "teacher")
    original = cells[teacher_key]

    # reproduced: the retrained teacher scores what the cell recorded and replaces it
    os.remove(original["checkpoint"])
    benchmark_main(argv + ["--other_weights=RRD:lambda_rrd=0.01"])
    cells = saved_cells(cells_path)
    assert cells[teacher_key]["test"] == original["test"] and "retrained" not in cells[teacher_key]
    assert cells[teacher_key]["checkpoint"] != original["checkpoint"]
    # only the file is new: the times stay those of the machine that timed the seed's cells
    assert cells[teacher_key]["train_seconds"] == original["train_seconds"]
    assert not any(cell.get("retrained_teacher") for cell in cells.values())

    # not reproduced: the reported teacher stays, the retrained one teaches the next cell
    reported = dict(cells[teacher_key]["test"], **{"ndcg@10": 0.5})
    cells[teacher_key]["test"] = reported
    os.remove(cells[teacher_key]["checkpoint"])
    cells_path.write_text(json.dumps(cells))
    benchmark_main(argv + ["--other_weights=RRD:lambda_rrd=0.1"])
    cells = saved_cells(cells_path)
    teacher = cells[teacher_key]
    assert teacher["test"] == reported and teacher["retrained"]["test"]["ndcg@10"] == original["test"]["ndcg@10"]
    assert os.path.isfile(teacher["retrained"]["checkpoint"])
    new = next(cell for cell in cells.values() if cell["method"] == "RRD" and cell["setting"] == {"lambda_rrd": 0.1})
    assert new["retrained_teacher"] is True
    assert not any(cell.get("retrained_teacher") for cell in cells.values() if cell is not new)
    table = (workdir / "results" / "ml-100k" / "BPR-recbole.md").read_text()
    assert (f"test ndcg@10 {original['test']['ndcg@10']:.4f} against the reported teacher's 0.5000" in table
            and "these learnt from the retrained one: RRD (lambda_rrd=0.1)." in table)
    teacher_row = next(line for line in table.splitlines() if line.startswith("| teacher |"))
    assert "| 0.5000 |" in teacher_row

    # its checkpoint is there now: a further distiller does not train the teacher a third time
    benchmark_main(argv + ["--other_weights=RRD:lambda_rrd=0.03"])
    assert saved_cells(cells_path)[teacher_key]["retrained"] == teacher["retrained"]
    # where the reported teacher's own file is there (its machine), it teaches, not the retrained one
    table = Table(arguments.parse_args(argv))
    assert table.runner.method_parameters("RRD", 2020, 8)[1]["teacher_checkpoint"] == teacher["retrained"]["checkpoint"]
    shutil.copy(teacher["retrained"]["checkpoint"], teacher["checkpoint"])
    assert table.runner.method_parameters("RRD", 2020, 8)[1]["teacher_checkpoint"] == teacher["checkpoint"]


def test_training_cost_is_compared_with_the_student_of_the_same_size_and_seed(workdir):
    """Each student size is divided by the student alone of its own size (the teacher by the
    first size's), seed by seed."""
    table = Table(arguments.parse_args(tiny_rrd_benchmark(workdir, 1) + ["--sizes=8,12", "--seeds=2"]))
    seconds = {("teacher", 16, 2020): 50.0, ("teacher", 16, 2021): 30.0,
               ("student", 8, 2020): 10.0, ("student", 8, 2021): 5.0,
               ("student", 12, 2020): 20.0, ("student", 12, 2021): 20.0,
               ("RRD", 8, 2020): 40.0, ("RRD", 8, 2021): 10.0, ("RRD", 12, 2020): 40.0}
    for (method, size, seed), value in seconds.items():
        weights = methods.default_weights(method)
        table.cells[methods.cell_key(method, size, seed, weights)] = {
            "method": method, "seed": seed, "size": size, "setting": weights, "weights": weights,
            "test": {"ndcg@10": 0.1}, "train_seconds": value}
    assert table.report.training_cost_ratio("RRD", 8) == pytest.approx((4.0 + 2.0) / 2)
    assert table.report.training_cost_ratio("RRD", 12) == pytest.approx(2.0)  # seed 2020 only
    assert table.report.training_cost_ratio("teacher", 16) == pytest.approx((5.0 + 6.0) / 2)
    assert table.report.training_cost_ratio("student", 12) == pytest.approx(1.0)


def test_per_user_metrics_are_stored_apart_and_a_former_file_is_migrated(workdir):
    """A table's per-user metrics are in its .per_user.npz (float64, exactly the values the
    JSON held), the rest in its .cells.json; a .cells.json of the former format (per-user lists
    inline) reads the same and is rewritten; the same cells give the same bytes; a process
    saving its cell keeps another's cell and per-user metrics."""
    argv = tiny_rrd_benchmark(workdir, inference_repeats=1)
    folder = workdir / "results" / "ml-100k"
    folder.mkdir(parents=True)
    cells_file, per_user_file = folder / "BPR-recbole.cells.json", folder / "BPR-recbole.per_user.npz"
    values = [0.0, 0.123457, 1.0, 0.333333]
    former = {"student|8|2020": {"method": "student", "seed": 2020,
                                 "test_per_user": {"ndcg@10": values, "hit@10": [0.0, 1.0, 1.0, 0.0]}},
              "teacher|16|2020": {"method": "teacher", "seed": 2020, "test": {"ndcg@10": 0.3}}}
    cells_file.write_text(json.dumps(former))
    table = Table(arguments.parse_args(argv))
    assert table.cells["student|8|2020"]["test_per_user"]["ndcg@10"].tolist() == values
    assert json.loads(cells_file.read_text()) == {
        "student|8|2020": {"method": "student", "seed": 2020}, "teacher|16|2020": former["teacher|16|2020"]}
    with np.load(per_user_file) as arrays:
        assert sorted(arrays.files) == ["student|8|2020|hit@10", "student|8|2020|ndcg@10"]
        assert arrays["student|8|2020|ndcg@10"].dtype == np.float64
        assert arrays["student|8|2020|ndcg@10"].tolist() == values
    assert saved_cells(cells_file) == former
    written = cells_file.read_bytes(), per_user_file.read_bytes()
    Table(arguments.parse_args(argv)).store.save()
    assert (cells_file.read_bytes(), per_user_file.read_bytes()) == written

    first, second = Table(arguments.parse_args(argv)), Table(arguments.parse_args(argv))
    first.cells["RRD|8|2020"] = {"method": "RRD", "seed": 2020, "test_per_user": {"ndcg@10": np.full(4, 0.5)}}
    first.store.save()
    second.cells["student|8|2021"] = {"method": "student", "seed": 2021, "test_per_user": {"ndcg@10": np.zeros(4)}}
    second.store.save()
    saved = saved_cells(cells_file)
    assert saved["RRD|8|2020"]["test_per_user"] == {"ndcg@10": [0.5] * 4}
    assert saved["student|8|2021"]["test_per_user"] == {"ndcg@10": [0.0] * 4}
    assert saved["student|8|2020"] == former["student|8|2020"]


#: Mistakes in the benchmark's command line, each with what its one error line says.
USER_MISTAKES = [
    (["--seeds=0"], "error: --seeds=0: must be at least 1"),
    (["--report_only"], "error: --report_only: no cells of ml-100k, BPR, recbole under "),
    (["--metric=ndcg@7"], "error: --metric=ndcg@7: the table's runs report recall@10, "),
    (["--sizes=20,x"], "error: --sizes='20,x': expected positive integers"),
]


def test_the_benchmarks_user_mistakes_end_in_one_error_line(workdir):
    """From the user's side: each mistake ends the script with one ``error: ...`` line and exit
    status 2, no traceback, nothing written (the scripts run side by side)."""
    processes = [subprocess.Popen(
        [sys.executable, os.path.join(REPO, "run_scripts", "benchmark.py"), *flags,
         f"--results={workdir / 'results'}", f"--work={workdir / 'work'}"],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for flags, _ in USER_MISTAKES]
    for (flags, message), process in zip(USER_MISTAKES, processes):
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 2, (flags, stderr[-2000:])
        assert len(stderr.splitlines()) == 1 and stderr.startswith(message), (flags, stderr)
        assert "Traceback" not in stdout + stderr
    assert not (workdir / "results").exists() and not (workdir / "work").exists()


@pytest.mark.parametrize("flags, message", [
    (["--seeds=x"], "error: argument --seeds: invalid int value: 'x'"),
    (["--bogus"], "error: unrecognized arguments: --bogus"),
    (["--methods=student,Foo"], "error: unknown methods ['Foo']"),
    (["--run_seeds=2030"], "error: --run_seeds must be among the benchmark's seeds [2020, 2021, 2022]"),
    (["--teacher_size=0"], "error: --teacher_size=0: must be at least 1"),
    (["--config_files=missing.yaml"], "error: --config_files: no file missing.yaml"),
    (["--tune", "--other_weights=RRD:lambda_rrd=0.1"], "error: --other_weights is for tables without --tune"),
    (["--other_weights=RRD:lambda_de=0.1"], "error: --other_weights: RRD's weights are ['lambda_rrd']"),
    (["--method_settings=RRD:rrd_topn"], "error: --method_settings: 'rrd_topn' is not key=value"),
    (["--search_only"], "error: --search_only is for tables with --tune"),
    (["--teacher_backbone=MF"], "error: argument --teacher_backbone: invalid choice: 'MF'"),
])
def test_a_bad_option_is_one_error_line(flags, message, workdir, monkeypatch, capsys):
    """Every other mistake of the command line, at the scripts' boundary (as the script runs it)."""
    from recbole_derrd.cli import run_main

    monkeypatch.setattr(sys, "argv", ["benchmark.py", *flags, f"--results={workdir / 'results'}"])
    with pytest.raises(SystemExit) as exit_status:
        run_main(benchmark_main)
    assert exit_status.value.code == 2
    stderr = capsys.readouterr().err
    assert len(stderr.splitlines()) == 1 and stderr.startswith(message), stderr
    assert not (workdir / "results").exists()


def imported_modules(tree, module):
    """The modules an AST imports (``module``: its own dotted name, for relative imports), and
    the strings it passes to ``importlib.import_module`` or ``__import__``."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[:len(module.split(".")) - node.level]
                base = ".".join(parent + ([node.module] if node.module else []))
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__"):
            names += [argument.value for argument in node.args if isinstance(argument, ast.Constant)]
    return names


def test_the_plugins_core_never_imports_the_harness():
    """No module of the plugin outside ``recbole_derrd/benchmark`` imports it (at the top or in
    a function), and importing every one of them leaves it unimported."""
    package = os.path.join(REPO, "recbole_derrd")
    core, offenders = [], []
    for folder, _, files in os.walk(package):
        relative = os.path.relpath(folder, REPO).replace(os.sep, ".")
        if relative == "recbole_derrd.benchmark" or relative.startswith("recbole_derrd.benchmark."):
            continue
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            module = relative if name == "__init__.py" else f"{relative}.{name[:-3]}"
            core.append(module)
            with open(os.path.join(folder, name)) as handle:
                tree = ast.parse(handle.read())
            package_name = module if name == "__init__.py" else module.rsplit(".", 1)[0]
            imported = imported_modules(tree, package_name + ".__init__")
            offenders += [(module, imported_name) for imported_name in imported
                          if imported_name == "recbole_derrd.benchmark"
                          or imported_name.startswith("recbole_derrd.benchmark.")]
    assert len(core) > 30 and offenders == []
    code = ("import importlib, sys\n"
            f"for name in {core!r}:\n    importlib.import_module(name)\n"
            "print(sorted(name for name in sys.modules if name.startswith('recbole_derrd.benchmark')))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.strip().splitlines()[-1] == "[]"
