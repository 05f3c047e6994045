"""Issue 38, item 4: early stopping does not count DE's transient phase. On ml-100k (paper
protocol, seed 2022, lambda_de 0.1) DE-RRD's validation score peaked at epoch 8 while the
selection network was still learning whom each expert reconstructs, dipped, and the patience
(20) counted from that peak stopped the run at epoch 29, one epoch before the score passed it
(results/ml-100k/BPR-paper.seed-2022.md). The replay below feeds that run's recorded figures
(experts per entity after each epoch, validation NDCG@10) to a real training."""

import pytest
import recbole.trainer

from recbole_derrd import run_recbole_derrd
from recbole_derrd.model.derrd import DERRD
from recbole_derrd.model.experts import routing_settled

#: The recorded run's experts per entity (of 30) and validation NDCG@10, epochs 0 to 32.
EXPERTS = [28.31, 25.43, 23.05, 21.39, 19.75, 18.13, 16.54, 14.98, 13.40, 11.96, 10.56, 9.35, 8.31,
           7.43, 6.64, 5.99, 5.46, 4.93, 4.52, 4.17, 3.89, 3.64, 3.43, 3.25, 3.09, 2.95, 2.83, 2.72,
           2.61, 2.53, 2.44, 2.37, 2.30]
SCORES = [0.0132, 0.0576, 0.0749, 0.1036, 0.1282, 0.1441, 0.1446, 0.1526, 0.1532, 0.1472, 0.1449,
          0.1434, 0.1448, 0.1437, 0.1439, 0.1434, 0.1437, 0.1446, 0.1460, 0.1456, 0.1465, 0.1471,
          0.1477, 0.1498, 0.1501, 0.1503, 0.1504, 0.1502, 0.1526, 0.1521, 0.1534, 0.1569, 0.1576]


@pytest.mark.parametrize("counts, settled", [
    ([], False),
    ([28.31], False),  # no change measured yet
    ([28.31, 25.43], False),  # -10%
    ([3.43, 3.25], False),  # -5.2%
    ([3.25, 3.09], True),  # -4.9%
    ([1.0, 1.0], True),
    ([2.0, 2.2], False),  # spreading out again
])
def test_the_routing_has_settled_once_its_experts_per_entity_change_little(counts, settled):
    assert routing_settled(counts, 0.05) is settled


def test_the_recorded_routing_settles_at_epoch_24():
    tolerance = DERRD.routing_settled_change
    settled = [routing_settled(EXPERTS[:epoch + 1], tolerance) for epoch in range(len(EXPERTS))]
    assert settled.index(True) == 24 and all(settled[24:])


def replay(monkeypatch, fast_config, teacher_checkpoint, workdir, **overrides):
    """A DERRD run whose epochs report the recorded experts per entity and validation score."""

    def diagnostics(self):
        epoch = len(self.recorded)
        self.recorded.append(epoch)
        return {"tau": 1.0, "active_experts": EXPERTS[epoch], "sparse_share": 0.0}

    def validation(self, valid_data, show_progress=False):
        score = SCORES[len(self.epoch_diagnostics) - 1]
        return score, {"ndcg@10": score}

    monkeypatch.setattr(DERRD, "recorded", [], raising=False)
    monkeypatch.setattr(DERRD, "epoch_diagnostics", diagnostics)
    monkeypatch.setattr(recbole.trainer.Trainer, "_valid_epoch", validation)
    # one step per epoch: the figures are the recorded run's, only the epochs' count matters
    settings = dict(checkpoint_dir=str(workdir / "saved"), teacher_checkpoint=teacher_checkpoint,
                    epochs=len(SCORES), stopping_step=20, valid_metric="NDCG@10",
                    train_batch_size=200000, use_rrd=False, de_num_experts=2)
    settings.update(overrides)
    return run_recbole_derrd("DERRD", "ml-100k", config_dict=fast_config(**settings), saved=False)


def test_patience_counts_from_the_end_of_des_transient(monkeypatch, fast_config, teacher_checkpoint, workdir):
    result = replay(monkeypatch, fast_config, teacher_checkpoint, workdir)
    # trained on past epoch 29, to the epochs given, its best now the last epochs' scores
    assert len(result["train_loss"]) == len(SCORES)
    assert result["best_valid_score"] == max(SCORES) == SCORES[-1]


def test_counted_from_the_start_the_recorded_run_stops_at_epoch_29(monkeypatch, fast_config,
                                                                   teacher_checkpoint, workdir):
    """The control: a routing that counts as settled at once is the former behaviour."""
    monkeypatch.setattr(DERRD, "routing_settled_change", float("inf"))
    result = replay(monkeypatch, fast_config, teacher_checkpoint, workdir)
    assert len(result["train_loss"]) == 30 and result["best_valid_score"] == 0.1532


def test_without_de_patience_counts_from_the_start(monkeypatch, fast_config, teacher_checkpoint, workdir):
    result = replay(monkeypatch, fast_config, teacher_checkpoint, workdir, lambda_de=0)
    assert len(result["train_loss"]) == 30
