"""Configuration layering, command-line isolation of the teacher, and the DERRD model's
contract: the loss parts, the plain-student inference path and what its checkpoint holds."""

import os
import subprocess
import sys

import pytest
import torch

from recbole.data.interaction import Interaction
from recbole.utils import init_seed

from recbole_derrd import DERRD, Config, get_trainer
from recbole_derrd.config import plugin_properties_file
from recbole_derrd.data.dataset import create_dataset, data_preparation
from recbole_derrd.teacher.loading import build_teacher_config, load_teacher
from recbole_derrd.trainer import DERRDTrainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_defaults_come_from_the_plugin_yaml(workdir):
    config = Config("DERRD", "ml-100k", config_dict={"gpu_id": ""})
    assert config["embedding_size"] == 20 and config["teacher_embedding_size"] == 200
    assert config["de_num_experts"] == 30 and config["rrd_topn"] == 500
    assert config["rrd_num_interesting"] == 40 and config["rrd_num_uninteresting"] == 40
    assert config["de_tau_end"] == pytest.approx(1e-10)
    assert config["learning_rate"] == 0.001  # RecBole's own defaults stay
    assert get_trainer(config["MODEL_TYPE"], "DERRD") is DERRDTrainer


def test_backbone_defaults_layer_over_the_model_defaults(workdir, monkeypatch):
    """properties/model/DERRD/NeuMF.yaml holds NeuMF's weights; user settings still win."""
    neumf = Config("DERRD", "ml-100k", config_dict={"gpu_id": "", "student_model": "NeuMF"})
    assert (neumf["lambda_de"], neumf["lambda_rrd"]) == (1e-4, 0.003)
    assert neumf["teacher_model"] == "NeuMF" and neumf["mf_embedding_size"] == 20
    bpr = Config("DERRD", "ml-100k", config_dict={"gpu_id": ""})
    assert (bpr["lambda_de"], bpr["lambda_rrd"]) == (0.01, 0.003)
    monkeypatch.setattr(sys, "argv", ["run.py", "--lambda_rrd=0.5"])
    overridden = Config("DERRD", "ml-100k", config_dict={"gpu_id": "", "student_model": "NeuMF"})
    assert (overridden["lambda_de"], overridden["lambda_rrd"]) == (1e-4, 0.5)


def test_command_line_overrides_reach_the_student_but_not_the_teacher(workdir, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["run.py", "--embedding_size=12", "--learning_rate=0.05"])
    config = Config("DERRD", "ml-100k", config_dict={"gpu_id": ""})
    assert config["embedding_size"] == 12 and config["learning_rate"] == 0.05
    teacher = build_teacher_config(config)
    assert teacher["model"] == "BPR"
    assert teacher["embedding_size"] == 200 and teacher["learning_rate"] == 0.001
    assert teacher["eval_args"] == config["eval_args"] and teacher["seed"] == config["seed"]


def test_teacher_config_overrides_apply_to_the_teacher_only(workdir, tmp_path):
    teacher_yaml = tmp_path / "teacher.yaml"
    teacher_yaml.write_text("learning_rate: 0.02\nepochs: 7\n")
    config = Config("DERRD", "ml-100k", config_dict={"gpu_id": "", "teacher_config": str(teacher_yaml)})
    teacher = build_teacher_config(config)
    assert teacher["learning_rate"] == 0.02 and teacher["epochs"] == 7
    assert config["learning_rate"] == 0.001 and config["epochs"] == 300


@pytest.fixture
def derrd_model(workdir, fast_config, teacher_checkpoint):
    def build(**overrides):
        config = Config(
            "DERRD", "ml-100k",
            config_dict=fast_config(teacher_checkpoint=teacher_checkpoint, **overrides),
        )
        init_seed(config["seed"], config["reproducibility"])
        train_data = data_preparation(config, create_dataset(config))[0]
        return config, DERRD(config, train_data.dataset, teacher=load_teacher(config, train_data.dataset)), train_data

    return build


def first_batch(train_data):
    return next(iter(train_data))


@pytest.mark.parametrize("use_de, use_rrd, parts", [(True, True, 3), (True, False, 2), (False, True, 2)])
def test_loss_parts_follow_the_switches(derrd_model, use_de, use_rrd, parts):
    _, model, train_data = derrd_model(use_de=use_de, use_rrd=use_rrd)
    batch = first_batch(train_data)
    losses = model.calculate_loss(batch)
    assert isinstance(losses, tuple) and len(losses) == parts == len(model.loss_names)
    assert all(torch.isfinite(loss) and loss > 0 for loss in losses)
    torch.testing.assert_close(losses[0], model.student.calculate_loss(batch))  # BPR's own loss
    sum(losses).backward()
    assert model.student.user_embedding.weight.grad is not None


def test_sum_reduction_scales_the_base_loss_by_the_batch_size(derrd_model):
    _, mean_model, train_data = derrd_model(loss_reduction="mean", use_de=False)
    _, sum_model, _ = derrd_model(loss_reduction="sum", use_de=False)
    batch = first_batch(train_data)
    sum_model.load_state_dict(mean_model.state_dict())
    torch.testing.assert_close(sum_model.base_loss(batch), mean_model.base_loss(batch) * len(batch))


def test_inference_is_the_plain_student(derrd_model):
    _, model, _ = derrd_model()
    model.eval()
    users = torch.tensor([1, 5, 42])
    interaction = Interaction({"user_id": users, "item_id": torch.tensor([3, 7, 9])})
    expected = model.student.user_embedding(users) @ model.student.item_embedding.weight.T
    torch.testing.assert_close(model.full_sort_predict(interaction).view(3, -1), expected)
    # experts and teacher tensors play no part: wiping them changes nothing
    with torch.no_grad():
        for parameter in model.experts.parameters():
            parameter.zero_()
        model.teacher_user_repr.zero_()
        model.teacher_topn.zero_()
    torch.testing.assert_close(model.full_sort_predict(interaction).view(3, -1), expected)
    torch.testing.assert_close(model.predict(interaction), (expected[[0, 1, 2], [3, 7, 9]]))


def test_teacher_tensors_stay_out_of_the_checkpoint_and_the_optimizer(derrd_model):
    _, model, _ = derrd_model()
    keys = model.state_dict().keys()
    assert not any("teacher" in key or "topn" in key or "_items" in key for key in keys)
    assert {".".join(key.split(".")[:2]) for key in keys if key.startswith("experts")} == {
        "experts.user", "experts.item"}
    assert {key.split(".")[0] for key in keys} == {"student", "experts"}
    assert not any(parameter is teacher_parameter
                   for parameter in model.parameters()
                   for teacher_parameter in model.teacher.model.parameters())
    assert model.student_parameter_count() == (944 + 1683) * 8


def test_epoch_samples_are_resampled_and_reproducible(derrd_model):
    _, model, _ = derrd_model()
    model.start_epoch(0)
    first = model.interesting_items.clone(), model.uninteresting_items.clone()
    model.start_epoch(1)
    assert not torch.equal(first[0], model.interesting_items)
    model.start_epoch(0)
    assert torch.equal(first[0], model.interesting_items)
    assert torch.equal(first[1], model.uninteresting_items)
    assert model.selection_tau == pytest.approx(1.0)
    model.start_epoch(3)
    assert model.selection_tau == pytest.approx(1e-10)  # epochs = 3 in the test settings


def test_yaml_defaults_ship_with_a_non_editable_install(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), REPO],
        check=True, capture_output=True,
    )
    probe = (
        "import recbole_derrd.config as c, os; p = c.plugin_properties_file('model', 'DERRD.yaml');"
        "print(p); assert p and p.startswith(os.environ['TARGET']), p"
    )
    env = dict(os.environ, PYTHONPATH=str(target), TARGET=str(target))
    completed = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env,
                               capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    assert plugin_properties_file("model", "DERRD.yaml") is not None


PROPERTIES = os.path.join(REPO, "recbole_derrd", "properties")
#: every YAML layer of the plugin's defaults: overall, distillers, per-backbone and per-model
PLUGIN_KEY_FILES = sorted(
    tuple(os.path.relpath(os.path.join(folder, name), PROPERTIES).split(os.sep))
    for folder, _, names in os.walk(PROPERTIES) for name in names if name.endswith(".yaml"))


def readme_documented_keys():
    """The keys named (in backticks) in the first column of docs/configuration.md's tables."""
    import re

    keys = set()
    for line in open(os.path.join(REPO, "docs", "configuration.md"), encoding="utf-8"):
        if line.startswith("| `"):
            keys.update(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", line.split("|")[1]))
    return keys


def test_every_plugin_yaml_layer_is_checked():
    assert ("distiller", "NeuMF.yaml") in PLUGIN_KEY_FILES and ("model", "DERRD", "NeuMF.yaml") in PLUGIN_KEY_FILES
    assert ("overall.yaml",) in PLUGIN_KEY_FILES and ("model", "HTD.yaml") in PLUGIN_KEY_FILES


@pytest.mark.parametrize("parts", PLUGIN_KEY_FILES)
def test_readme_documents_every_plugin_key(parts):
    import yaml

    with open(plugin_properties_file(*parts), encoding="utf-8") as handle:
        keys = yaml.safe_load(handle)
    assert keys
    documented = readme_documented_keys()
    undocumented = [key for key in keys if key not in documented]
    assert not undocumented, undocumented


def test_de_term_covers_batch_users_and_half_of_positive_and_negative_items(derrd_model):
    """L_DE = mean over the batch's unique users + 0.5 (mean over unique positives + mean over
    unique negatives), each entity reconstructed by its side's experts (same Gumbel noise)."""
    _, model, train_data = derrd_model(use_rrd=False)
    batch = first_batch(train_data)
    users = torch.unique(batch["user_id"])
    positive, negative = torch.unique(batch["item_id"]), torch.unique(batch["neg_item_id"])
    tables = model.student_backbone.side_tables()
    torch.manual_seed(11)
    actual = model.de_term(batch, users)
    torch.manual_seed(11)  # de_term draws the user bank's noise first, then the items'
    user_part = model.experts["user"](tables["user"][1][users], model.de_target("user")[users],
                                      model.selection_tau).mean()
    items, occurrence = torch.unique(torch.cat([positive, negative]), return_inverse=True)
    item_losses = model.experts["item"](tables["item"][1][items], model.de_target("item")[items],
                                        model.selection_tau)[occurrence]
    expected = user_part + 0.5 * (item_losses[: len(positive)].mean() + item_losses[len(positive):].mean())
    torch.testing.assert_close(actual, expected)
    assert model.de_target("user").shape == (model.n_users, 32)


def test_rrd_term_ranks_the_sampled_items_of_the_batch_users(derrd_model):
    from recbole_derrd.model.rrd import rrd_loss

    _, model, train_data = derrd_model(use_de=False)
    model.start_epoch(0)
    users = torch.unique(first_batch(train_data)["user_id"])
    user_vectors = model.student.user_embedding.weight[users]
    item_table = model.student.item_embedding.weight
    interesting = (user_vectors.unsqueeze(1) * item_table[model.interesting_items[users]]).sum(-1)
    uninteresting = (user_vectors.unsqueeze(1) * item_table[model.uninteresting_items[users]]).sum(-1)
    torch.testing.assert_close(model.rrd_term(users), rrd_loss(interesting, uninteresting).mean())
    # the interesting items are the teacher's top-N entries at the sampled ranks, best first
    ranks = (model.interesting_items[users].unsqueeze(2) == model.teacher_topn[users].unsqueeze(1)).float().argmax(2)
    assert (ranks[:, 1:] > ranks[:, :-1]).all()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"de_weight_floor": 1 / 30, "de_num_experts": 30}, "de_weight_floor .* must be below 1/de_num_experts"),
        ({"de_weight_floor": 0.2, "de_num_experts": 10}, "must be below 1/de_num_experts"),
        ({"de_weight_floor": -1e-3}, "de_weight_floor must be at least 0"),
        ({"de_weight_floor": "small"}, "de_weight_floor must be a finite number"),
        ({"de_routing": "fastest"}, "de_routing must be one of auto, dense, sparse"),
    ],
)
def test_impossible_routing_settings_fail_when_the_config_is_built(workdir, fast_config, overrides, message):
    from recbole_derrd.settings.validation import ConfigValueError

    with pytest.raises(ConfigValueError, match=message):
        Config("DERRD", "ml-100k", config_dict=fast_config(**overrides))


def test_de_anneals_over_the_runs_epochs_up_to_300(derrd_model):
    """The model and the weight search's trials anneal over the same P: ``epochs`` up to 300
    unless ``de_anneal_epochs`` is set."""
    for overrides, length in (({"epochs": 2000}, 300), ({"epochs": 40}, 40),
                              ({"epochs": 2000, "de_anneal_epochs": 1000}, 1000)):
        config, model, _ = derrd_model(use_rrd=False, **overrides)
        assert model.anneal_epochs == length
        assert DERRD.schedule_settings(config) == {"de_anneal_epochs": length}
        model.start_epoch(length)
        assert model.selection_tau == pytest.approx(config["de_tau_end"])


def test_routing_changes_the_cost_not_the_loss(derrd_model):
    """At an annealed temperature, a DERRD step's DE loss (and its gradients on the student)
    is the same through every expert as over the active pairs only; the epoch's figures say
    how concentrated the selection was."""
    results = {}
    for routing in ("dense", "sparse"):
        _, model, train_data = derrd_model(use_rrd=False, de_routing=routing, de_anneal_epochs=10)
        model.start_epoch(8)  # tau = 1e-8
        batch = first_batch(train_data)
        torch.manual_seed(0)
        base, de = model.calculate_loss(batch)
        de.backward()
        results[routing] = (de.detach(), model.student.user_embedding.weight.grad.clone())
        diagnostics = model.epoch_diagnostics()
        assert diagnostics["tau"] == pytest.approx(1e-8)
        assert 1 <= diagnostics["active_experts"] < 2  # one expert per entity, rare ties
        assert diagnostics["sparse_share"] == (1.0 if routing == "sparse" else 0.0)
        assert model.epoch_diagnostics()["active_experts"] == 0  # counters reset per epoch
    torch.testing.assert_close(results["sparse"][0], results["dense"][0], rtol=1e-5, atol=0)
    torch.testing.assert_close(results["sparse"][1], results["dense"][1], rtol=1e-4, atol=1e-7)
