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

Computed in log space (:func:`reverse_logcumsumexp`, ``logsumexp``), so scores of any
magnitude are safe.

The paper's ablation (Table 4) compares this relaxed form with ``full`` (a Plackett-Luce
likelihood of all K + L sampled items in the teacher's order) and ``interesting_only`` (the
interesting items alone, no uninteresting items in the denominators); :func:`ranking_loss`
dispatches on ``rrd_mode``.
"""

import torch

#: The RRD variants of the paper's ablation.
RRD_MODES = ("relaxed", "full", "interesting_only")


def reverse_logcumsumexp(scores):
    r""":math:`\log \sum_{l \ge k} e^{s_l}` for every position ``k`` of the last dimension.

    ``torch.logcumsumexp`` is exact but slow on the CPU (a sequential scan with a log and an
    exp per element). Shifting each row by its maximum and taking a plain cumulative sum is
    exact too as long as no tail sum underflows; the rare rows whose scores spread beyond the
    floating-point range (a tail below ``tiny * 1e8``) are recomputed with
    ``torch.logcumsumexp``.
    """
    shift = scores.detach().amax(dim=-1, keepdim=True)
    tails = (scores - shift).exp().flip(-1).cumsum(-1).flip(-1)
    tiny = torch.finfo(scores.dtype).tiny
    # clamp: a row recomputed below must not carry log(0) (its gradient would be nan)
    result = tails.clamp_min(tiny).log() + shift
    underflow = (tails.detach() < tiny * 1e8).any(dim=-1)
    if underflow.any():
        rows = underflow.nonzero().squeeze(1)
        exact = torch.logcumsumexp(scores[rows].flip(-1), dim=-1).flip(-1)
        result = result.index_put((rows,), exact)
    return result


def plackett_luce_loss(ordered_scores, extra_scores=None):
    r"""Per-row negative Plackett-Luce log-likelihood of ``ordered_scores``' order (best
    first), with ``extra_scores`` added to every denominator but not ranked themselves:

    .. math::
        -\sum_k \Big[ s_k - \log\Big(\sum_{l \ge k} e^{s_l} + \sum_j e^{e_j}\Big) \Big]

    Args:
        ordered_scores (torch.Tensor): ``[n, K]`` scores in the target order.
        extra_scores (torch.Tensor, optional): ``[n, L]`` scores of unranked items.

    Returns:
        torch.Tensor: ``[n]``.
    """
    log_denominator = reverse_logcumsumexp(ordered_scores)
    if extra_scores is not None and extra_scores.shape[-1] > 0:
        log_extra = torch.logsumexp(extra_scores, dim=-1, keepdim=True)
        log_denominator = torch.logaddexp(log_denominator, log_extra)
    return (log_denominator - ordered_scores).sum(dim=-1)


def rrd_loss(interesting_scores, uninteresting_scores):
    r"""Per-user RRD loss (the relaxed form).

    Args:
        interesting_scores (torch.Tensor): ``[n_users, K]`` student scores of the interesting
            items, sorted by teacher rank (best first).
        uninteresting_scores (torch.Tensor): ``[n_users, L]`` student scores of the
            uninteresting items (any order).

    Returns:
        torch.Tensor: ``[n_users]`` losses.
    """
    return plackett_luce_loss(interesting_scores, uninteresting_scores)


def ranking_loss(interesting_scores, uninteresting_scores, mode="relaxed"):
    r"""Per-user ranking distillation loss of an ``rrd_mode``.

    ``full`` expects ``uninteresting_scores`` in the teacher's order (best first): all K + L
    items are then ranked, interesting ones first (they come from the teacher's top-N).
    """
    if mode == "relaxed":
        return rrd_loss(interesting_scores, uninteresting_scores)
    if mode == "full":
        return plackett_luce_loss(torch.cat([interesting_scores, uninteresting_scores], dim=-1))
    if mode == "interesting_only":
        return plackett_luce_loss(interesting_scores)
    raise ValueError(f"rrd_mode must be one of {RRD_MODES}, got {mode!r}")
