"""Issue 38, items 1 and 2: a table's report and the summary judge every comparison over seeds
(a hierarchical bootstrap of seeds and users), not over the test users alone; the headline's
competitor is the best of every other distiller. Built from synthetic cells (nothing trained)."""

import re

import numpy as np
import pytest

from recbole_derrd.benchmark import methods
from recbole_derrd.benchmark import summary as summarize
from recbole_derrd.benchmark.cells import write_cells
from recbole_derrd.benchmark.table import main as benchmark_main

SEEDS = (2020, 2021, 2022)
USERS = 400
#: Each row's relative gain (%) over the student alone at each seed.
GAINS = {
    "teacher": (10, 10, 10),
    "student": (0, 0, 0),
    # every user of a seed agrees, the seeds do not: a tiny p over users, no gain over seeds
    "RD": (6, -2, 6),
    "CD": (1.0, 1.5, 1.2),  # small, but the same at every seed
    "RRD": (3, 3, 3),
    "DE-RRD": (7, 7.5, 7),
    "HTD": (8, 9, 8.5),  # the best other distiller, above DE-RRD
}
METHODS = ",".join(GAINS)


def synthetic_cells(gains=GAINS):
    """One cell per row and seed at the plugin's defaults, with per-user metrics: each seed's
    student-alone users, scaled by the row's gain at that seed, plus a little noise."""
    rng = np.random.default_rng(0)
    cells = {}
    for index, seed in enumerate(SEEDS):
        base = {metric: rng.uniform(0.1, 0.5, USERS) for metric in ("ndcg@10", "recall@20")}
        for method, per_seed in gains.items():
            size = 200 if method == "teacher" else 20
            per_user = {metric: values * (1 + per_seed[index] / 100) + rng.normal(0, 1e-3, USERS)
                        for metric, values in base.items()}
            weights = methods.default_weights(method)
            cells[methods.cell_key(method, size, seed, weights)] = {
                "method": method, "size": size, "seed": seed, "setting": weights, "weights": weights,
                "test": {metric: float(values.mean()) for metric, values in per_user.items()},
                "test_per_user": per_user, "valid_score": 0.1, "parameters": 1000 * size, "epochs": 10,
                "train_seconds": 1.0, "train_seconds_per_epoch": 0.1, "inference_seconds": 0.01,
            }
    return cells


def report(tmp_path, seeds=3):
    """The table's markdown report, rebuilt from its cells."""
    benchmark_main(["--dataset=ml-100k", "--backbone=BPR", f"--seeds={seeds}", f"--methods={METHODS}",
                    "--report_only", f"--results={tmp_path / 'results'}", f"--work={tmp_path / 'work'}"])
    return (tmp_path / "results" / "ml-100k" / "BPR-recbole.md").read_text()


def rows_of(text, heading):
    """The table rows of a markdown section, split into cells."""
    section = text.split(heading)[1].split("\n## ")[0]
    return [[cell.strip() for cell in line.split("|")[1:-1]] for line in section.splitlines()
            if line.startswith("| ") and "---" not in line][1:]


@pytest.fixture
def table(tmp_path):
    folder = tmp_path / "results" / "ml-100k"
    folder.mkdir(parents=True)
    write_cells(str(folder / "BPR-recbole.cells.json"), synthetic_cells())
    return tmp_path


def test_significant_means_the_interval_over_seeds_excludes_zero(table):
    text = report(table)
    lines = text.split("\n\n")[2].splitlines()  # the results table
    header = [cell.strip() for cell in lines[0].split("|")[1:-1]]
    main = {row[0]: row for row in ([cell.strip() for cell in line.split("|")[1:-1]] for line in lines[2:])}
    column = header.index("ndcg@10 vs student")
    # RD: the users agree at every seed (p tiny), the seeds do not: no `*`; CD: every seed agrees
    assert main["RD"][column].endswith("%") and main["CD"][column].endswith("%*")
    assert main["HTD"][column].endswith("*") and main["DE-RRD"][column].endswith("*")
    tests = {(row[0], row[1]): row for row in rows_of(text, "## Significance (over seeds and test users)")}
    rd = tests[("RD vs student", "ndcg@10")]
    assert rd[4] == "+6.0 / -2.0 / +6.0"  # per seed, in seed order
    low, high = (float(value) for value in re.findall(r"[+-]\d+\.\d+", rd[5]))
    assert low < 0 < high and rd[6] == "no" and float(rd[8]) < 1e-6  # users-only: p tiny
    users_low = float(re.findall(r"[+-]\d+\.\d+", rd[7])[0])
    assert users_low > 0  # the users alone would call it significant
    cd = tests[("CD vs student", "ndcg@10")]
    assert float(re.findall(r"[+-]\d+\.\d+", cd[5])[0]) > 0 and cd[6] == "yes"
    # DE-RRD against the best other distiller on each metric: HTD, above it at every seed
    assert tests[("DE-RRD vs HTD", "ndcg@10")][6] == "yes" and ("DE-RRD vs RD", "ndcg@10") not in tests
    # every comparison counted: 5 distillers x 2 metrics + DE-RRD against HTD on both
    assert len(tests) == 12 and "This table makes 12 comparisons. The intervals are not corrected" in text


def test_one_seed_has_no_interval_over_seeds(table):
    text = report(table, seeds=1)
    assert "%*" not in text and "No `*`: with one seed no interval over seeds exists" in text
    tests = rows_of(text, "## Significance (over seeds and test users)")
    assert tests and all(row[5] == "-" and row[6] == "one seed" for row in tests)
    assert tests[0][8] != "-"  # the users-only p is still given


def test_the_headline_compares_derrd_with_the_best_other_distiller(table):
    report(table)
    summarize.main(["--tables=ml-100k:BPR:recbole", "--seeds=3", f"--results={table / 'results'}"])
    summary = (table / "results" / "summary.md").read_text()
    headline = summary.split("<!-- headline:start -->")[1].split("<!-- headline:end -->")[0]
    assert "This table makes 4 comparisons." in headline
    rows = {row[2]: row for row in rows_of(headline, "## Results across datasets (BPR backbone")}
    cells = synthetic_cells()
    for metric, row in rows.items():
        htd = np.mean([cells[methods.cell_key("HTD", 20, seed, methods.default_weights("HTD"))]["test"][metric]
                       for seed in SEEDS])
        assert row[5].startswith(f"HTD: {htd:.4f} ± ")  # not RD or CD, the former candidates
        # DE-RRD above the student alone and below HTD at every seed: both significant
        assert re.match(r"\+\d\.\d% \(\+7\.\d / \+7\.\d / \+7\.\d; \[\+\d\.\d%, \+\d\.\d%\], significant; users p = ", row[8])
        assert re.match(r"-\d\.\d% \(-\d\.\d / -\d\.\d / -\d\.\d; \[-\d\.\d%, -\d\.\d%\], significant; users p = ", row[9])


def test_a_note_where_de_cells_predate_the_early_stopping_rule(table):
    assert "All its DE and DE-RRD cells were trained under the plugin's former early-stopping rule" in report(table)
    path = table / "results" / "ml-100k" / "BPR-recbole.cells.json"
    cells = synthetic_cells()
    key = methods.cell_key("DE-RRD", 20, 2020, methods.default_weights("DE-RRD"))
    cells[key]["early_stopping_rule"] = "after-transient"  # trained under the current rule
    write_cells(str(path), cells)
    assert "2 of its 3 DE and DE-RRD cells were trained under the plugin's former" in report(table)
    for seed in SEEDS:
        cells[methods.cell_key("DE-RRD", 20, seed, methods.default_weights("DE-RRD"))]["early_stopping_rule"] = "x"
    write_cells(str(path), cells)
    text = report(table)
    assert "former early-stopping rule" not in text
    # the schedule: none of the cells records DE's current default schedule or sets its own
    assert "All its DE and DE-RRD cells annealed DE's selection over the run's whole `epochs`" in text
    cells[key]["de_schedule"] = "epochs-up-to-300"
    other = methods.cell_key("DE-RRD", 20, 2021, methods.default_weights("DE-RRD"))
    cells[other]["config"] = {"de_anneal_epochs": 300}
    write_cells(str(path), cells)
    assert "1 of its 3 DE and DE-RRD cells annealed" in report(table)
    cells[methods.cell_key("DE-RRD", 20, 2022, methods.default_weights("DE-RRD"))]["de_schedule"] = "x"
    write_cells(str(path), cells)
    assert "annealed DE's selection" not in report(table)
