"""Export: a distilled student becomes a plain RecBole checkpoint with the student's metrics,
readable by the plugin and by RecBole and torch alone."""

import json
import os
import subprocess
import sys

import pytest
import torch

from recbole_derrd.files.checkpoint import CheckpointError
from recbole_derrd.files.export import export_student
from recbole_derrd.quick_start import evaluate_model, load_data_and_model

from helpers import directory_snapshot

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Evaluates an exported checkpoint where recbole_derrd cannot be imported: RecBole's Config,
#: its BPR and its Trainer, and torch's default (weights-only) loading.
PLAIN_RECBOLE = """
import json, sys
sys.modules["recbole_derrd"] = None  # the plugin is not installed, as far as Python knows
try:
    import recbole_derrd
    raise SystemExit("recbole_derrd is importable")
except ImportError:
    pass
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.trainer import Trainer
from recbole.utils import get_model, init_seed

path = sys.argv[1]
checkpoint = torch.load(path)  # torch >= 2.6: weights only
stored = checkpoint["config"]
config = Config(model=checkpoint["model"], dataset=stored["dataset"], config_dict={
    "embedding_size": stored["embedding_size"], "seed": stored["seed"],
    "eval_args": stored["eval_args"], "gpu_id": "", "eval_batch_size": 4096000,
})
init_seed(config["seed"], config["reproducibility"])
train_data, valid_data, test_data = data_preparation(config, create_dataset(config))
model = get_model(checkpoint["model"])(config, train_data.dataset)
model.load_state_dict(checkpoint["state_dict"])
by_hand = Trainer(config, model).evaluate(test_data, load_best_model=False)
by_recbole = Trainer(config, model).evaluate(test_data, model_file=path)
print(json.dumps({"by_hand": by_hand, "by_recbole": by_recbole}))
"""


@pytest.fixture
def exported(derrd_run, tmp_path):
    _, result = derrd_run
    return export_student(result["checkpoint"], str(tmp_path / "student.pth"))


def test_export_keeps_the_plain_student_in_recbole_layout(derrd_run, exported):
    _, result = derrd_run
    checkpoint = torch.load(exported, weights_only=True)
    assert set(checkpoint) >= {"config", "epoch", "cur_step", "best_valid_score", "state_dict",
                               "other_parameter", "format", "split_fingerprint"}
    assert "optimizer" not in checkpoint
    assert checkpoint["model"] == checkpoint["config"]["model"] == "BPR"
    assert set(checkpoint["state_dict"]) == {"user_embedding.weight", "item_embedding.weight"}
    assert checkpoint["state_dict"]["user_embedding.weight"].shape == (944, 8)
    source = torch.load(result["checkpoint"], weights_only=True)
    torch.testing.assert_close(checkpoint["state_dict"]["item_embedding.weight"],
                               source["state_dict"]["student.item_embedding.weight"])
    assert checkpoint["split_fingerprint"] == source["split_fingerprint"]
    # the plugin's keys are gone, the backbone's and RecBole's stay
    config = checkpoint["config"]
    for key in ("student_model", "teacher_checkpoint", "lambda_rrd", "de_num_experts", "dist_backend"):
        assert key not in config
    assert config["embedding_size"] == 8 and config["seed"] == 2020


def test_exported_student_has_the_distilled_metrics(derrd_run, exported, workdir):
    _, result = derrd_run
    config, model, _, train_data, _, test_data = load_data_and_model(exported)
    assert type(model).__name__ == "BPR" and config["model"] == "BPR"
    assert dict(evaluate_model(config, model, train_data, test_data)) == dict(result["test_result"])


def test_recbole_alone_reads_the_exported_student(derrd_run, exported, workdir):
    _, result = derrd_run
    completed = subprocess.run(
        [sys.executable, "-c", PLAIN_RECBOLE, exported],
        cwd=workdir, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    metrics = json.loads(completed.stdout.strip().splitlines()[-1])
    assert metrics["by_hand"] == metrics["by_recbole"] == dict(result["test_result"])


def test_export_script_never_overwrites(derrd_run, tmp_path):
    _, result = derrd_run
    target = tmp_path / "student.pth"
    target.write_bytes(b"an earlier export")
    completed = subprocess.run(
        [sys.executable, os.path.join(REPO, "run_scripts", "export.py"), result["checkpoint"],
         f"--output={target}"],
        capture_output=True, text=True,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    written = completed.stdout.strip().splitlines()[-1]
    assert written == str(tmp_path / "student-1.pth")
    assert target.read_bytes() == b"an earlier export"
    assert torch.load(written, weights_only=True)["model"] == "BPR"


def test_only_a_distillers_checkpoint_exports(teacher_checkpoint, tmp_path):
    before = directory_snapshot(os.path.dirname(teacher_checkpoint))
    with pytest.raises(CheckpointError, match="holds a BPR model, not a distiller"):
        export_student(teacher_checkpoint, str(tmp_path / "student.pth"))
    with pytest.raises(CheckpointError, match="does not exist"):
        export_student(str(tmp_path / "missing.pth"))
    assert not os.path.exists(tmp_path / "student.pth")
    assert directory_snapshot(os.path.dirname(teacher_checkpoint)) == before
