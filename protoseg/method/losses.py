"""The loss terms (Eqs. 7, 11, 12) and the training objective of Eq. 13, ``CE + lambda_1 * PPC +
lambda_2 * PPD`` (plus any auxiliary term), assembled once by ``total_loss`` from ``LossTerm``s.

Every loss averages over labelled pixels only, and is an exact (differentiable) zero when a batch
has no labelled pixel, rather than the NaN of a mean over nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from .similarity import PrototypeScores


@dataclass
class LossTerm:
    """One term of Eq. 13: its value (a mean over ``pixels``), its weight and the pixel count."""

    value: Tensor  # scalar, this rank's mean over its pixels
    weight: float = 1.0  # 1 for CE, lambda_1 / lambda_2 for PPC / PPD, the aux weight for aux CE
    pixels: Tensor | None = None  # pixels the mean is over; needed by total_loss's DDP weighting


def total_loss(terms: Mapping[str, LossTerm], *, global_pixels: bool = False) -> Tensor:
    """Eq. 13: ``sum_j weight_j * term_j`` over the terms, in their order.

    ``global_pixels`` (under an initialised process group): each rank's term is scaled by its share of
    the global pixels the term averages over, ``pixels * world_size / sum over ranks`` (one
    all-reduce), so that DDP's gradient average equals one process's gradient on the global batch.
    """
    names = list(terms)
    scale: dict[str, Tensor | float] = {name: 1.0 for name in names}
    if global_pixels:
        local = torch.stack([terms[n].pixels.detach().float() for n in names])
        total = local.clone()
        dist.all_reduce(total)
        scale = dict(zip(names, local * dist.get_world_size() / total.clamp_min(1)))
    return sum(terms[n].weight * scale[n] * terms[n].value for n in names)


def ce_loss(logits: Tensor, labels: Tensor, *, weight: Tensor | None = None, ignore_index: int = 255,
            align_corners: bool = False) -> Tensor:
    """Eq. 7: pixel-wise cross-entropy over classes.

    Args:
        logits: ``[B, C, h, w]`` class scores; bilinearly upsampled to the label size if smaller.
        labels: ``[B, H, W]`` class ids, ``ignore_index`` for unlabelled pixels.
        weight: optional ``[C]`` class weights (the official Cityscapes recipe uses them).
    """
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=align_corners)
    valid = labels != ignore_index
    if not bool(valid.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), labels.long(), weight=weight, ignore_index=ignore_index)


def ppc_loss(scores: PrototypeScores, target: Tensor, valid: Tensor) -> Tensor:
    """Eq. 11: pixel-prototype contrast, CE over all C*K prototypes, target = assigned prototype.

    Args:
        scores: the similarity pass with labels: ``ppc_lse`` (``[N]`` logsumexp over all C*K of
            ``sim / tau``), ``own_sim`` (``[N, K]`` similarities to the own class's prototypes) and
            the temperature ``tau`` that pass used (read here, never passed twice).
        target: ``[N]`` assigned prototype index within the class; valid: ``[N]`` labelled pixels.
    """
    if scores.ppc_lse is None or scores.ppc_temperature is None:
        raise ValueError("ppc_loss needs the similarity pass of prototype_scores(..., labels)")
    positive = scores.own_sim.gather(1, target.view(-1, 1)).squeeze(1).float() / scores.ppc_temperature
    return _masked_mean(scores.ppc_lse - positive, valid)


def ppd_loss(own_sim: Tensor, target: Tensor, valid: Tensor, max_similarity: float = 1.0) -> Tensor:
    """Eq. 12: pixel-prototype distance, ``(1 - i^T p_{c_i,k_i})^2`` for unit vectors.

    ``max_similarity`` is the similarity of a perfect match: 1 for cosine, 0 for the negated
    distances of the Table 5d ablations (where the loss becomes the squared distance).
    """
    positive = own_sim.gather(1, target.view(-1, 1)).squeeze(1).float()
    return _masked_mean((max_similarity - positive).pow(2), valid)


def _masked_mean(values: Tensor, valid: Tensor) -> Tensor:
    if not bool(valid.any()):
        return values.sum() * 0.0
    return values[valid].mean()
