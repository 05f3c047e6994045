"""A distiller from outside the package: one model file and one YAML, registered with one line
(``register_distiller``), runs through ``run_scripts/run.py`` like the plugin's own, its keys
checked like theirs. Nothing in the package names it."""

import glob
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from recbole_derrd.settings.registry import PluginImportError, load_plugins

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: A toy distiller: the student learns the teacher's sigmoid scores of the batch's pairs.
TOY_MODEL = '''
    """ToyKD: the teacher's scores of the batch's (user, positive item) pairs, softened by
    toy_temperature, as soft labels of the student's scores."""

    import os

    import torch
    import torch.nn.functional as F

    from recbole_derrd import register_distiller
    from recbole_derrd.model.distiller import Distiller


    class ToyKD(Distiller):
        loss_names = ("base", "toy")
        loss_weight_keys = ("lambda_toy",)
        defaults_file = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ToyKD.yaml")

        @classmethod
        def check_keys(cls, checker):
            super().check_keys(checker)
            checker.number("toy_temperature", strictly_positive=True)

        def __init__(self, config, dataset, teacher=None, split=None):
            super().__init__(config, dataset, teacher=teacher, split=split)
            self.lambda_toy = config["lambda_toy"]
            self.temperature = config["toy_temperature"]

        def toy_term(self, interaction):
            users, items = interaction[self.USER_ID], interaction[self.ITEM_ID]
            with torch.no_grad():
                labels = torch.sigmoid(self.teacher_backbone.score_pairs(users, items) / self.temperature)
            scores = self.student_backbone.score_pairs(users, items)
            return self.reduce(F.binary_cross_entropy_with_logits(scores, labels, reduction="none"))

        def calculate_loss(self, interaction):
            with self.student_backbone.training_step():
                return self.base_loss(interaction), self.weighted_term(self.lambda_toy, self.toy_term, interaction)


    register_distiller(ToyKD)
'''

TOY_DEFAULTS = """\
lambda_toy: 0.5                 # (float) Weight of the toy term.
toy_temperature: 2.0            # (float) Softens the teacher's scores.
weight_search_values:
  lambda_toy: [0, 0.5]
"""

#: Tiny ml-100k settings (conftest.FAST), as run.py flags.
FLAGS = ["--dataset=ml-100k", "--gpu_id=''", "--epochs=1", "--embedding_size=8", "--learning_rate=0.01",
         "--eval_batch_size=4096000", "--train_batch_size=8192", "--show_progress=False"]


def run_toy(tmp_path, teacher_checkpoint, *flags):
    plugins = tmp_path / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "toy_kd.py").write_text(textwrap.dedent(TOY_MODEL))
    (plugins / "ToyKD.yaml").write_text(TOY_DEFAULTS)
    environment = {key: value for key, value in os.environ.items() if key != "RECBOLE_DERRD_DEBUG"}
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(plugins), REPO] + [path for path in [os.environ.get("PYTHONPATH")] if path])
    environment["RECBOLE_DERRD_PLUGINS"] = "toy_kd"
    work = tmp_path / "work"
    work.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, os.path.join(REPO, "run_scripts", "run.py"), "--model=ToyKD", *FLAGS,
               f"--teacher_checkpoint={teacher_checkpoint}", *flags]
    return subprocess.run(command, cwd=work, env=environment, capture_output=True, text=True,
                          timeout=600), work


def test_a_distiller_from_a_module_of_its_own_trains_and_is_checked(tmp_path, teacher_checkpoint):
    done, work = run_toy(tmp_path, teacher_checkpoint)
    assert done.returncode == 0, done.stderr[-3000:]
    log = open(glob.glob(str(work / "log" / "ToyKD" / "*.log"))[0]).read()
    # its defaults (its own YAML), its loss parts, its test, and the final table with the
    # teacher and the student alone
    assert "lambda_toy = 0.5" in log and "toy_temperature = 2.0" in log
    epochs = [line for line in log.splitlines() if "training [time" in line and "toy loss:" in line]
    assert len(epochs) == 1
    assert "test result" in log
    assert "student vs teacher and student alone" in log and "distilled student (ToyKD: BPR)" in log
    # a checkpoint of the plugin's format, its student distilled (the teacher not in it)
    checkpoint = torch.load(glob.glob(str(work / "saved" / "ToyKD-*[0-9].pth"))[0], weights_only=True)
    assert checkpoint["model"] == "ToyKD" and checkpoint["config"]["lambda_toy"] == 0.5
    assert any(key.startswith("student.") for key in checkpoint["state_dict"])
    assert not any("teacher" in key for key in checkpoint["state_dict"])

    # its own key is checked with the others: one message, exit status 2, nothing trained
    done, work = run_toy(tmp_path / "bad", teacher_checkpoint, "--toy_temperature=-1")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: Invalid configuration for ToyKD:")
    assert "toy_temperature must be positive, got -1" in done.stderr
    assert not (work / "saved").exists()


def test_a_plugin_module_that_cannot_be_imported_is_a_user_error(monkeypatch):
    monkeypatch.setenv("RECBOLE_DERRD_PLUGINS", "no_such_toy_module")
    with pytest.raises(PluginImportError, match="cannot import module 'no_such_toy_module'"):
        load_plugins()
