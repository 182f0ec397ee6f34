"""Within-class online clustering: Sinkhorn-Knopp transport plans (Eqs. 8-10).

Both work in float32 whatever the input dtype (``exp(cos / 0.05)`` reaches e^20 and overflows fp16),
in the release's multiplicative form shifted per (class, prototype) so nothing overflows, and fall
back to the log domain if anything underflows (un-normalised distances of Table 5d). The result
equals the release's ``distributed_sinkhorn`` (exp, normalise the prototype rows, then the pixel
columns, ``iters`` times, times N) up to float rounding.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor


def sinkhorn(scores: Tensor, iters: int = 3, epsilon: float = 0.05) -> Tensor:
    """The transport plan of one class: ``sinkhorn_batched`` with a single class.

    Args:
        scores: ``[N, K]`` similarities of the class's N pixels to its K prototypes.
    Returns:
        ``[N, K]`` float32 plan, each pixel's row summing to 1, prototypes used equally (equipartition).
    """
    labels = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
    return sinkhorn_batched(scores, labels, num_classes=1, iters=iters, epsilon=epsilon)


def sinkhorn_batched(scores: Tensor, labels: Tensor, num_classes: int, iters: int = 3,
                     epsilon: float = 0.05, distributed: bool = False) -> Tensor:
    """Eqs. 8-10: the within-class assignment, relaxed (Eq. 9) and solved by Sinkhorn-Knopp (Eq. 10).

    Independent Sinkhorn-Knopp for every class at once, without a loop over classes; each pixel's
    one-hot assignment of Eq. 8 is then ``hard_assignment`` of its row.

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
    logits = scores.float() / epsilon  # log of exp(P^T X / kappa), Eq. 10
    counts = torch.bincount(labels, minlength=num_classes)
    if global_:
        dist.all_reduce(counts)
    pixels = counts.clamp_min(1).float()[labels].unsqueeze(1)  # N_c per pixel
    plan = _sinkhorn_direct(logits, labels, num_classes, pixels, iters, global_)
    if plan is None:  # exp underflowed (similarities far outside [-1, 1]): exact log-domain path
        plan = _sinkhorn_log(logits, labels, num_classes, pixels, iters, global_)
    return plan


def _sinkhorn_direct(logits: Tensor, labels: Tensor, num_classes: int, pixels: Tensor, iters: int,
                     global_: bool) -> Tensor | None:
    """The release's multiplicative form, shifted per (class, prototype) so nothing overflows.

    A per-prototype factor cancels in the first prototype normalisation, so the shift is exact
    (a per-pixel shift would not be, at a finite number of iterations). Returns None on underflow.
    """
    k = logits.shape[1]
    peak = _segment_max(logits, labels, num_classes, global_)
    q = (logits - peak[labels]).exp_()
    for _ in range(iters):
        mass = q.new_zeros(num_classes, k).index_add_(0, labels, q)  # per-prototype mass
        if global_:
            dist.all_reduce(mass)
        q /= mass.clamp_min_(torch.finfo(q.dtype).tiny)[labels] * k  # diag(u): prototypes get 1/K
        row = q.sum(1, keepdim=True)
        underflow = (row == 0).any().to(torch.int32)
        if global_:  # every rank must take the same path, or the collectives desynchronise
            dist.all_reduce(underflow, op=dist.ReduceOp.MAX)
        if bool(underflow):
            return None
        q /= row * pixels  # diag(v): pixels carry 1/N_c
    return q.mul_(pixels)  # times N_c: each pixel's row sums to 1


def _sinkhorn_log(logits: Tensor, labels: Tensor, num_classes: int, pixels: Tensor, iters: int,
                  global_: bool) -> Tensor:
    log_q, log_n, log_k = logits, pixels.log(), math.log(logits.shape[1])
    for _ in range(iters):
        log_q = log_q - segment_logsumexp(log_q, labels, num_classes, global_)[labels] - log_k
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - log_n
    return (log_q + log_n).exp()


def _segment_max(values: Tensor, segments: Tensor, num_segments: int, all_ranks: bool) -> Tensor:
    """``[num_segments, K]`` max per segment; 0 for an empty one."""
    index = segments.unsqueeze(1).expand(-1, values.shape[1])
    peak = values.new_full((num_segments, values.shape[1]), float("-inf"))
    peak = peak.scatter_reduce(0, index, values, reduce="amax", include_self=True)
    if all_ranks:
        dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    return torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))


def segment_logsumexp(values: Tensor, segments: Tensor, num_segments: int, all_ranks: bool = False) -> Tensor:
    """``out[s, j] = logsumexp(values[segments == s, j])``; ``-inf`` for an empty segment.

    With ``all_ranks`` the segments span the rows of every rank (two all-reduces).

    Args:
        values: ``[N, K]`` finite values; segments: ``[N]`` ids in ``[0, num_segments)``.
    Returns:
        ``[num_segments, K]``.
    """
    peak = _segment_max(values, segments, num_segments, all_ranks)
    total = values.new_zeros(num_segments, values.shape[1])
    total = total.index_add_(0, segments, (values - peak[segments]).exp())
    if all_ranks:
        dist.all_reduce(total)
    return peak + total.log()
