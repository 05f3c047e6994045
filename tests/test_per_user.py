"""Issue 13: per-user metrics come from the ranking the evaluator scores (their mean is
RecBole's reported metric), match the metric formulas user by user, and the benchmark's paired
tests and --tune choices do what they say."""

import math

import numpy as np
import pytest
import torch
from conftest import FAST

from recbole.config import Config as RecBoleConfig
from recbole.evaluator import Evaluator
from recbole.evaluator.collector import DataStruct

from recbole_derrd import run_recbole_derrd
from recbole_derrd.data.per_user import per_user_metrics


def brute_force(hits_row, pos_len, k):
    """NDCG, Recall, Hit and MRR at k of one user, from its definition."""
    hits = hits_row[:k]
    dcg = sum(hit / math.log2(rank + 2) for rank, hit in enumerate(hits))
    idcg = sum(1 / math.log2(rank + 2) for rank in range(min(pos_len, k)))
    first = next((rank for rank, hit in enumerate(hits) if hit), None)
    return {"ndcg": dcg / idcg, "recall": sum(hits) / pos_len, "hit": float(any(hits)),
            "mrr": 0.0 if first is None else 1 / (first + 1)}


def test_per_user_metrics_match_their_definitions(workdir):
    config = RecBoleConfig("BPR", "ml-100k", config_dict={
        "metrics": ["NDCG", "Recall", "Hit", "MRR"], "topk": [3, 5], "gpu_id": ""})
    generator = torch.Generator().manual_seed(0)
    hits = (torch.rand(40, 5, generator=generator) < 0.3).int()
    pos_len = torch.maximum(torch.randint(1, 7, (40, 1), generator=generator), hits.sum(1, keepdim=True))
    data = DataStruct()
    data.set("rec.topk", torch.cat([hits, pos_len], dim=1))
    evaluator = Evaluator(config)
    values = per_user_metrics(evaluator, data)
    assert set(values) == {f"{m}@{k}" for m in ("ndcg", "recall", "hit", "mrr") for k in (3, 5)}
    for user in range(40):
        for k in (3, 5):
            expected = brute_force(hits[user].tolist(), int(pos_len[user]), k)
            for metric, value in expected.items():
                assert values[f"{metric}@{k}"][user] == pytest.approx(value, abs=1e-12)
    reported = evaluator.evaluate(data)
    for key, vector in values.items():
        assert round(float(vector.mean()), config["metric_decimal_place"]) == reported[key]


@pytest.mark.parametrize("protocol", [
    {},  # full ranking
    {"eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "uni99"},
     "fixed_eval_candidates": True, "metrics": ["Hit", "NDCG", "MRR"], "topk": [5, 10]},
])
def test_per_user_mean_is_the_reported_test_metric(workdir, protocol):
    result = run_recbole_derrd("BPR", "ml-100k", config_dict=dict(FAST, epochs=1, **protocol), saved=False)
    per_user = result["test_per_user"]
    assert set(per_user) == set(result["test_result"])
    users = {len(values) for values in per_user.values()}
    assert len(users) == 1 and users.pop() > 900  # every test user of ml-100k, once
    for metric, values in per_user.items():
        assert float(np.mean(values)) == pytest.approx(result["test_result"][metric], abs=5e-5)


def cells_with(values_by_seed, method="m"):
    return [{"seed": seed, "method": method, "test_per_user": {"ndcg@10": list(values)}}
            for seed, values in values_by_seed.items()]


def test_paired_difference_statistics():
    from recbole_derrd.benchmark.significance import paired_difference

    rng = np.random.default_rng(1)
    base = {2020: rng.random(300), 2021: rng.random(200)}
    same = paired_difference(cells_with(base), cells_with(base), "ndcg@10")
    assert same["mean"] == 0 and same["p"] == 1.0 and same["low"] == same["high"] == 0
    shifted = {seed: values + 0.1 for seed, values in base.items()}
    shift = paired_difference(cells_with(shifted), cells_with(base), "ndcg@10")
    assert shift["mean"] == pytest.approx(0.1) and shift["p"] < 1e-50
    assert shift["low"] == pytest.approx(0.1) and shift["high"] == pytest.approx(0.1)
    assert shift["users"] == 500 and shift["seeds"] == 2
    # noisy differences: the bootstrap interval is the normal one, mean +- 1.96 sd / sqrt(n)
    noisy = {seed: values + rng.normal(0.02, 0.3, len(values)) for seed, values in base.items()}
    test = paired_difference(cells_with(noisy), cells_with(base), "ndcg@10")
    differences = np.concatenate([noisy[seed] - base[seed] for seed in base])
    half_width = 1.96 * differences.std() / math.sqrt(len(differences))
    assert test["mean"] == pytest.approx(differences.mean())
    assert test["low"] == pytest.approx(differences.mean() - half_width, abs=0.15 * half_width)
    assert test["high"] == pytest.approx(differences.mean() + half_width, abs=0.15 * half_width)
    # only seeds present on both sides are paired
    one_seed = paired_difference(cells_with({2020: noisy[2020]}), cells_with(base), "ndcg@10")
    assert one_seed["users"] == 300
    assert paired_difference(cells_with(base), cells_with({2030: base[2020]}), "ndcg@10") is None


def test_tune_searches_the_first_seed_and_reuses_its_choice(tmp_path):
    from recbole_derrd.benchmark import REPO, arguments, methods as bench
    from recbole_derrd.benchmark.table import Table

    args = arguments.parse_args(["--tune", "--seeds=2", f"--results={tmp_path}", f"--work={tmp_path}"])
    table = Table(args)
    first, second = args.seed_values

    def finish(method, scores):
        for setting, score in zip(table.plan.settings(method, first, 20), scores):
            table.cells[bench.cell_key(method, 20, first, setting)] = {
                "seed": first, "setting": setting, "valid_score": score, "valid_score_bigger": True}

    with pytest.raises(RuntimeError):
        table.plan.settings("RRD", first, 20)  # the student's search comes first
    assert table.plan.settings("student", first, 20) == bench.TUNING_GRIDS["student"]
    finish("student", [0.20, 0.19, 0.21])
    learner = {"learning_rate": 0.001, "weight_decay": 1e-5}
    assert table.plan.chosen_setting("student", 20) == learner
    # every distiller trains its student with the student alone's chosen learner settings
    assert table.plan.settings("RRD", first, 20) == [dict(learner, **trial) for trial in bench.TUNING_GRIDS["RRD"]]
    finish("RRD", [0.30, 0.32, 0.32])  # a tie goes to the earlier trial
    assert table.plan.chosen_setting("RRD", 20) == dict(learner, lambda_rrd=0.003)
    assert table.plan.settings("RRD", second, 20) == [dict(learner, lambda_rrd=0.003)]
    # DE-RRD searches lambda_de at RRD's choice; RRD-topK takes RRD's choice, no trials
    assert table.plan.settings("DE-RRD", first, 20) == [
        dict(learner, lambda_rrd=0.003, lambda_de=value) for value in (0.001, 0.01, 0.1)]
    assert table.plan.settings("RRD-topK", first, 20) == [dict(learner, lambda_rrd=0.003)]
    with pytest.raises(RuntimeError):
        table.plan.settings("DE", first, 20)  # DE-RRD's search has not run
    # a smaller-is-better validation metric picks the smallest score
    for cell in table.plan.trials("RRD", 20):
        cell["valid_score_bigger"] = False
    assert table.plan.chosen_setting("RRD", 20) == dict(learner, lambda_rrd=0.001)
    import yaml

    with open(f"{REPO}/recbole_derrd/properties/model/DERRD.yaml") as handle:
        default_rrd = yaml.safe_load(handle)["lambda_rrd"]
    assert bench.is_plugin_default("RRD", {"lambda_rrd": default_rrd})
    assert not bench.is_plugin_default("RRD", {"lambda_rrd": default_rrd * 3})
    assert bench.is_plugin_default("student", bench.STUDENT_DEFAULTS)
    assert not bench.is_plugin_default("student", {"learning_rate": 0.003, "weight_decay": 0.0})
