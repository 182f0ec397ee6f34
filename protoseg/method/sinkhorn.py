"""Within-class online clustering: Sinkhorn-Knopp transport plans (Eqs. 8-10).

Both functions work in the log domain in float32, whatever the input dtype: ``exp(cos / 0.05)``
reaches e^20 and overflows fp16, and un-normalised distances (Table 5d) overflow even fp32 in the
release's direct form. The result equals the release's ``distributed_sinkhorn`` (exp, normalise
the prototype rows, then the pixel columns, ``iters`` times, times N) up to float rounding.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor


def sinkhorn(scores: Tensor, iters: int = 3, epsilon: float = 0.05) -> Tensor:
    """Transport plan for one class (Eqs. 9-10).

    Args:
        scores: ``[N, K]`` similarities of the class's N pixels to its K prototypes.
    Returns:
        ``[N, K]`` float32 plan, each pixel's row summing to 1, prototypes used equally (equipartition).
    """
    labels = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
    return sinkhorn_batched(scores, labels, num_classes=1, iters=iters, epsilon=epsilon)


def sinkhorn_batched(scores: Tensor, labels: Tensor, num_classes: int, iters: int = 3,
                     epsilon: float = 0.05, distributed: bool = False) -> Tensor:
    """Independent Sinkhorn-Knopp for every class at once, without a loop over classes.

    Args:
        scores: ``[N, K]``: row n holds pixel n's similarities to the K prototypes of its class.
        labels: ``[N]`` class of each pixel, in ``[0, num_classes)``; classes may have any pixel count.
        distributed: under an initialised process group, take the prototype marginals and the pixel
            counts over all ranks, so the plan equals the one of a single process holding the global
            batch (the paper variant's DDP semantics; the release clusters each rank's pixels alone).
    Returns:
        ``[N, K]`` float32 plan; rows of class c equal ``sinkhorn(scores[labels == c])``.
    """
    if iters < 1:
        raise ValueError(f"sinkhorn iters={iters}: expected an integer >= 1")
    n, k = scores.shape
    global_ = distributed and dist.is_available() and dist.is_initialized()
    if n == 0 and not global_:
        return scores.new_zeros((0, k), dtype=torch.float32)
    log_q = scores.float() / epsilon  # log of exp(P^T X / kappa), Eq. 10
    counts = torch.bincount(labels, minlength=num_classes)
    if global_:
        dist.all_reduce(counts)
    counts = counts.clamp_min(1)
    log_n = counts.float().log()[labels].unsqueeze(1)  # log N_c per pixel
    log_k = math.log(k)
    for _ in range(iters):
        # prototypes (rows of L^c) each receive 1/K of the class's mass: diag(u)
        log_q = log_q - segment_logsumexp(log_q, labels, num_classes, global_)[labels] - log_k
        # pixels (columns of L^c) each carry 1/N_c: diag(v)
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - log_n
    return (log_q + log_n).exp()  # times N_c: each pixel's row sums to 1


def segment_logsumexp(values: Tensor, segments: Tensor, num_segments: int, all_ranks: bool = False) -> Tensor:
    """``out[s, j] = logsumexp(values[segments == s, j])``; ``-inf`` for an empty segment.

    With ``all_ranks`` the segments span the rows of every rank (two all-reduces).

    Args:
        values: ``[N, K]`` finite values; segments: ``[N]`` ids in ``[0, num_segments)``.
    Returns:
        ``[num_segments, K]``.
    """
    k = values.shape[1]
    index = segments.unsqueeze(1).expand(-1, k)
    peak = values.new_full((num_segments, k), float("-inf"))
    peak = peak.scatter_reduce(0, index, values, reduce="amax", include_self=True)
    if all_ranks:
        dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    total = values.new_zeros((num_segments, k)).index_add_(0, segments, (values - peak[segments]).exp())
    if all_ranks:
        dist.all_reduce(total)
    return peak + total.log()
