"""The schedule study's figures (:mod:`recbole_derrd.benchmark.anneal_study`) on cells whose
answers are known: the stop temperature, the comparison and the cost line."""

import numpy as np
import pytest

from recbole_derrd.benchmark.anneal_study import row_lines, stop_temperature


def cell(seed, scale, seconds, epochs, anneal=None):
    users = np.linspace(0.1, 0.5, 50) * (1 + 0.01 * (seed - 2020))
    return {"seed": seed, "epochs": epochs, "train_seconds": seconds, "timing": "CPU X, 1 torch thread(s)",
            "config": {} if anneal is None else {"de_anneal_epochs": anneal},
            "test": {metric: float((users * scale).mean()) for metric in ("ndcg@10", "recall@20")},
            "test_per_user": {metric: users * scale for metric in ("ndcg@10", "recall@20")}}


def test_the_stop_temperature_follows_the_cells_own_schedule_else_the_cap():
    # epoch 200 of 2,000 (the cap): tau = 1e-10 ** 0.1 = 0.1; of 300: 1e-10 ** (2/3)
    assert stop_temperature(cell(2020, 1, 1, 201), 2000) == pytest.approx(0.1)
    assert stop_temperature(cell(2020, 1, 1, 201, anneal=300), 2000) == pytest.approx(10 ** (-20 / 3))
    assert stop_temperature(cell(2020, 1, 1, 400, anneal=300), 2000) == pytest.approx(1e-10)  # held


def test_a_row_compares_the_rerun_with_the_former_cells_of_the_same_seeds():
    seeds = (2020, 2021)
    former = {seed: cell(seed, 1.0, 100.0, 201) for seed in seeds}
    rerun = {seed: cell(seed, 1.1, 50.0, 201, anneal=300) for seed in seeds}
    student = {seed: cell(seed, 0.9, 10.0, 150) for seed in seeds + (2022,)}
    rerun[2022] = cell(2022, 2.0, 1.0, 10, anneal=300)  # no former cell: left out
    lines = row_lines("data", "DE-RRD", former, rerun, student, 2000)
    assert [line.split(" | ")[3] for line in lines] == ["ndcg@10", "recall@20", "cost"]
    assert all(line.startswith("| data | DE-RRD | 2 | ") for line in lines)
    assert "| +10.0% (+10.0 / +10.0; [+10.0%, +10.0%], significant) |" in lines[0]
    assert "P = 2000: 201 epochs, tau at the stop 1e-01 to 1e-01, 100 s (10.0x the student alone's)" in lines[2]
    assert "P = 300: 201 epochs, tau at the stop 2e-07 to 2e-07, 50 s (5.0x the student alone's)" in lines[2]
    assert "time 0.50x the former's (timed on: CPU X, 1 torch thread(s))" in lines[2]
    assert row_lines("data", "DE", {}, rerun, student, 2000) == []
