"""
recbole_derrd.data.per_user
###########################
Per-user values of RecBole's top-k metrics, from the very ranking the evaluator scores, for
paired significance tests between two models on one split (``run_scripts/benchmark.py``).

RecBole's top-k metrics (:class:`recbole.evaluator.base_metric.TopkMetric`: NDCG, Recall, Hit,
MRR, Precision, MAP) compute a users x k matrix (``metric_info``) and report its column means.
:class:`PerUserRecorder` keeps the data the evaluator was given, and :func:`per_user_metrics`
returns those columns, so the mean of a per-user vector is the reported metric (before RecBole's
rounding). Users come in the evaluation dataloader's order, which is fixed by the split: two
models evaluated on the same split are paired user by user.
"""

import inspect

import numpy as np

from recbole.evaluator.base_metric import TopkMetric


def per_user_metrics(evaluator, data_struct, wanted=None):
    """Per-user values of ``evaluator``'s top-k metrics on ``data_struct``.

    Args:
        evaluator (recbole.evaluator.Evaluator): the trainer's evaluator.
        data_struct (DataStruct): what the evaluator scored (``rec.topk``).
        wanted (iterable of str): names such as ``ndcg@10``; None: every top-k metric at every k.

    Returns:
        dict: ``{'ndcg@10': numpy array (one value per evaluated user), ...}``.
    """
    wanted = None if wanted is None else {name.lower() for name in wanted}
    values = {}
    for name, metric in evaluator.metric_class.items():
        if not isinstance(metric, TopkMetric):
            continue
        pos_index, pos_len = metric.used_info(data_struct)
        # users x max(topk); Hit, MRR and Precision need no pos_len (as in their calculate_metric)
        takes_pos_len = len(inspect.signature(metric.metric_info).parameters) == 2
        matrix = metric.metric_info(pos_index, pos_len) if takes_pos_len else metric.metric_info(pos_index)
        for k in metric.topk:
            key = f"{name}@{k}"
            if wanted is None or key in wanted:
                values[key] = np.asarray(matrix[:, k - 1], dtype=np.float64)
    return values


class PerUserRecorder:
    """Records the per-user metrics of the evaluations a trainer runs inside the ``with`` block
    (the last one is kept in :attr:`values`)::

        with PerUserRecorder(trainer, wanted=["ndcg@10"]) as recorder:
            test_result = trainer.evaluate(test_data)
        recorder.values["ndcg@10"]
    """

    def __init__(self, trainer, wanted=None):
        self.trainer = trainer
        self.wanted = wanted
        self.values = {}

    def __enter__(self):
        evaluator = self.trainer.evaluator
        self._evaluate = evaluator.evaluate

        def evaluate(data_struct):
            self.values = per_user_metrics(evaluator, data_struct, self.wanted)
            return self._evaluate(data_struct)

        evaluator.evaluate = evaluate
        return self

    def __exit__(self, *exc_info):
        del self.trainer.evaluator.evaluate  # the class's method again
        return False
