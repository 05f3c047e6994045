r"""
recbole_derrd.model.rrd
#######################
Relaxed Ranking Distillation (RRD), Section 3.2 of

    SeongKu Kang, Junyoung Hwang, Wonbin Kweon, Hwanjo Yu. "DE-RRD: A Knowledge Distillation
    Framework for Recommender System." In CIKM 2020.

A Plackett-Luce likelihood of the teacher's order of the ``K`` interesting items, in which the
``L`` uninteresting items sit in every denominator but their own order is ignored:

.. math::
    \mathcal{L}_{RRD}(u) = -\sum_{k=1}^{K} \Big[ s_{\pi_k} - \log\Big( \sum_{l=k}^{K}
    e^{s_{\pi_l}} + \sum_{j=1}^{L} e^{s_{u_j}} \Big) \Big]

Computed in log space (``logcumsumexp`` / ``logsumexp``), so scores of any magnitude are safe.
"""

import torch


def rrd_loss(interesting_scores, uninteresting_scores):
    r"""Per-user RRD loss.

    Args:
        interesting_scores (torch.Tensor): ``[n_users, K]`` student scores of the interesting
            items, sorted by teacher rank (best first).
        uninteresting_scores (torch.Tensor): ``[n_users, L]`` student scores of the
            uninteresting items (any order).

    Returns:
        torch.Tensor: ``[n_users]`` losses.
    """
    # log sum_{l >= k} exp(s_{pi_l}) for every k: a reversed cumulative log-sum-exp
    log_tail = torch.logcumsumexp(interesting_scores.flip(-1), dim=-1).flip(-1)
    log_uninteresting = torch.logsumexp(uninteresting_scores, dim=-1, keepdim=True)
    log_denominator = torch.logaddexp(log_tail, log_uninteresting)
    return (log_denominator - interesting_scores).sum(dim=-1)
