"""Issue 4: the paper's competitors RD (Tang & Wang, KDD 2018) and CD (Lee et al., ICDM 2019),
against brute-force computations, and as distillers that share DERRD's teacher handling."""

import math

import pytest
import torch

from recbole.utils import init_seed

from recbole_derrd import Config, run_recbole_derrd
from recbole_derrd.data.dataset import create_dataset, data_preparation
from recbole_derrd.model import CD, RD
from recbole_derrd.model.cd import cd_loss
from recbole_derrd.model.rd import rd_discrepancy_weights, rd_loss, rd_position_weights
from recbole_derrd.teacher.loading import load_teacher


def test_rd_position_weights():
    weights = rd_position_weights(5, 2.0)
    expected = torch.tensor([math.exp(-r / 2.0) for r in range(1, 6)])
    torch.testing.assert_close(weights, expected / expected.sum())


def test_rd_discrepancy_weights_against_brute_force():
    generator = torch.Generator().manual_seed(0)
    topk_scores = torch.randn(4, 3, generator=generator)
    sampled = torch.randn(4, 50, generator=generator)
    n_items, sharpness = 1000, 0.01
    weights = rd_discrepancy_weights(topk_scores, sampled, n_items, sharpness)
    for user in range(4):
        for rank in range(3):
            higher = sum(1 for value in sampled[user].tolist() if value > topk_scores[user, rank].item())
            estimated = higher / 50 * n_items
            expected = math.tanh(max(sharpness * (estimated - rank), 0.0))
            assert weights[user, rank].item() == pytest.approx(expected, abs=1e-6)


def test_rd_loss_against_brute_force():
    scores = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    weights = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.0, 0.9]])
    expected = [-sum(w * math.log(1 / (1 + math.exp(-s))) for s, w in zip(row_s, row_w))
                for row_s, row_w in zip(scores.tolist(), weights.tolist())]
    torch.testing.assert_close(rd_loss(scores, weights), torch.tensor(expected))


def test_cd_loss_against_brute_force():
    scores = torch.tensor([[1.5, -0.5], [0.0, 2.0]])
    labels = torch.tensor([[0.9, 0.2], [0.5, 0.7]])
    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = [-sum(q * math.log(sigmoid(s)) + (1 - q) * math.log(1 - sigmoid(s))
                     for s, q in zip(row_s, row_q))
                for row_s, row_q in zip(scores.tolist(), labels.tolist())]
    torch.testing.assert_close(cd_loss(scores, labels), torch.tensor(expected))


@pytest.fixture
def build(workdir, fast_config, teacher_checkpoint):
    def make(model_class, **overrides):
        config = Config(model_class.__name__, "ml-100k",
                        config_dict=fast_config(teacher_checkpoint=teacher_checkpoint, **overrides))
        init_seed(config["seed"], config["reproducibility"])
        train_data = data_preparation(config, create_dataset(config))[0]
        return model_class(config, train_data.dataset, teacher=load_teacher(config, train_data.dataset)), train_data

    return make


def test_rd_uses_the_teacher_topk_with_position_then_hybrid_weights(build):
    model, train_data = build(RD, rd_topk=5, rd_discrepancy_start_epoch=2, rd_rank_samples=30)
    assert model.teacher_topn.shape == (model.n_users, 5)
    batch = next(iter(train_data))
    users = torch.unique(batch["user_id"])
    model.start_epoch(0)
    expected = rd_loss(model.student_backbone.pair_scores(users, model.teacher_topn[users]),
                       model.position_weights.expand(len(users), 5)).mean()
    torch.testing.assert_close(model.rd_term(users), expected)
    model.start_epoch(2)
    torch.manual_seed(3)
    hybrid = model.rd_term(users)
    assert hybrid < expected  # discrepancy weights are at most 1, some below
    losses = model.calculate_loss(batch)
    assert len(losses) == 2 and all(torch.isfinite(loss) for loss in losses)


def test_cd_samples_from_the_teacher_ranking_with_soft_labels(build):
    model, train_data = build(CD, cd_topn=50, cd_num_samples=6, cd_label_temperature=2.0)
    model.start_epoch(0)
    assert model.sampled_items.shape == (model.n_users, 6)
    inside = (model.sampled_items.unsqueeze(2) == model.teacher_topn.unsqueeze(1)).any(2)
    assert inside.all()
    teacher = model.teacher.model
    users = torch.arange(model.n_users)
    with torch.no_grad():
        scores = (teacher.user_embedding.weight[users].unsqueeze(1)
                  * teacher.item_embedding.weight[model.sampled_items]).sum(-1)
    torch.testing.assert_close(model.soft_labels, torch.sigmoid(scores / 2.0))
    batch = next(iter(train_data))
    batch_users = torch.unique(batch["user_id"])
    student_scores = model.student_backbone.pair_scores(batch_users, model.sampled_items[batch_users])
    torch.testing.assert_close(model.cd_term(batch_users),
                               cd_loss(student_scores, model.soft_labels[batch_users]).mean())


@pytest.mark.parametrize("model", ["RD", "CD"])
def test_competitors_train_and_evaluate(workdir, fast_config, teacher_checkpoint, model):
    result = run_recbole_derrd(model, "ml-100k", config_dict=fast_config(
        epochs=2, teacher_checkpoint=teacher_checkpoint, rd_topk=5, cd_topn=50))
    assert result["test_result"]["hit@10"] > 0.05
    assert result["student_parameters"] == (944 + 1683) * 8
    losses = [result["train_loss"][epoch] for epoch in sorted(result["train_loss"])]
    assert losses[1] < losses[0]
