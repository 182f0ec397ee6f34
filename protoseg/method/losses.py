"""The training objective of Eq. 13: ``ce_weight * CE + lambda_1 * PPC + lambda_2 * PPD``.

Every loss averages over labelled pixels only, and is an exact (differentiable) zero when a batch
has no labelled pixel, rather than the NaN of a mean over nothing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def ce_loss(logits: Tensor, labels: Tensor, *, weight: Tensor | None = None, ignore_index: int = 255,
            align_corners: bool = False) -> Tensor:
    """Pixel-wise cross-entropy over classes (Eq. 7).

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


def ppc_loss(ppc_lse: Tensor, own_sim: Tensor, target: Tensor, valid: Tensor,
             temperature: float = 0.1) -> Tensor:
    """Pixel-prototype contrast (Eq. 11): CE over all C*K prototypes, target = assigned prototype.

    Args:
        ppc_lse: ``[N]`` logsumexp over all C*K prototypes of ``sim / temperature``.
        own_sim: ``[N, K]`` similarities to the prototypes of the pixel's class.
        target: ``[N]`` assigned prototype index within the class; valid: ``[N]`` labelled pixels.
    """
    positive = own_sim.gather(1, target.view(-1, 1)).squeeze(1).float() / temperature
    return _masked_mean(ppc_lse - positive, valid)


def ppd_loss(own_sim: Tensor, target: Tensor, valid: Tensor, max_similarity: float = 1.0) -> Tensor:
    """Pixel-prototype distance (Eq. 12): ``(1 - i^T p_{c_i,k_i})^2`` for unit vectors.

    ``max_similarity`` is the similarity of a perfect match: 1 for cosine, 0 for the negated
    distances of the Table 5d ablations (where the loss becomes the squared distance).
    """
    positive = own_sim.gather(1, target.view(-1, 1)).squeeze(1).float()
    return _masked_mean((max_similarity - positive).pow(2), valid)


def _masked_mean(values: Tensor, valid: Tensor) -> Tensor:
    if not bool(valid.any()):
        return values.sum() * 0.0
    return values[valid].mean()
