"""Prototype assignment and momentum update (Eq. 14), with the DDP reductions of both variants.

The update takes hard assignments as an argument, so a caller (or a test) can inject its own.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor


def hard_assignment(plan: Tensor, mode: str = "argmax", tau: float = 0.5) -> Tensor:
    """``[N, K]`` plan -> ``[N]`` prototype index per pixel.

    argmax (paper): the prototype of the pixel's largest assignment. gumbel (official release):
    ``F.gumbel_softmax(plan, tau, hard=True)``, which treats the plan's probabilities as logits, so
    the draw agrees with the argmax only about a quarter of the time for K = 10; ``tau`` cannot change
    a hard sample. The noise is drawn exactly as torch's gumbel_softmax draws it.
    """
    if mode == "argmax":
        return plan.argmax(dim=1)
    if mode == "gumbel":
        return F.gumbel_softmax(plan, tau=tau, hard=True).argmax(dim=1)
    raise ValueError(f"update_assignment={mode!r}: expected argmax or gumbel")


def momentum_update(prototypes: Tensor, embeddings: Tensor, labels: Tensor, assignments: Tensor, *,
                    momentum: float, mask: Tensor | None = None, normalize: bool = True,
                    reduce_sums: bool = False) -> Tensor:
    """Eq. 14: ``p <- mu * p + (1 - mu) * mean_l2(pixels assigned to p)`` for every assigned p.

    Args:
        prototypes: ``[C, K, D]``. embeddings: ``[N, D]`` (detached here).
        labels: ``[N]`` class per pixel; assignments: ``[N]`` prototype within the class.
        mask: ``[N]`` pixels that feed the update (labelled, or only the correct ones for the release).
        normalize: l2-normalise the means and the result (cosine); plain means for Table 5d's
            un-normalised distances.
        reduce_sums: under DDP, all-reduce the per-prototype sums and counts first, so every rank
            applies the update that one process would compute from the global batch.
    Returns:
        ``[C, K, D]`` new prototypes; prototypes without an assigned pixel are unchanged.
    """
    num_classes, k, d = prototypes.shape
    emb = embeddings.detach().float()
    index = labels.long() * k + assignments.long()
    if mask is not None:  # excluded pixels go to a discard row: no [N, D] copy of the kept ones
        index = torch.where(mask, index, torch.full_like(index, num_classes * k))
    sums = emb.new_zeros(num_classes * k + 1, d).index_add_(0, index, emb)[:-1]
    counts = torch.bincount(index, minlength=num_classes * k + 1)[:-1].to(emb.dtype)
    if reduce_sums and dist.is_available() and dist.is_initialized():
        dist.all_reduce(sums)
        dist.all_reduce(counts)
    centres = F.normalize(sums, dim=1) if normalize else sums / counts.clamp_min(1).unsqueeze(1)
    old = prototypes.reshape(num_classes * k, d).float()
    moved = (counts > 0).unsqueeze(1)
    new = torch.where(moved, momentum * old + (1.0 - momentum) * centres, old)
    if normalize:
        new = F.normalize(new, dim=1)
    return new.view(num_classes, k, d).to(prototypes.dtype)


def average_across_ranks(prototypes: Tensor) -> Tensor:
    """The release's DDP reduction: prototypes averaged over ranks (all-reduce mean), not re-normalised."""
    if not (dist.is_available() and dist.is_initialized()):
        return prototypes
    out = prototypes.clone()
    dist.all_reduce(out.div_(dist.get_world_size()))
    return out
