"""What every head returns, and the loss of Eq. 13 computed from it."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from protoseg.method.losses import ce_loss


@dataclass
class HeadOutput:
    """Class scores at feature resolution, plus what the auxiliary losses need in training."""

    logits: Tensor  # [B, C, h, w]
    losses: dict[str, Tensor] = field(default_factory=dict)  # unweighted extra terms (ppc, ppd)
    loss_weights: dict[str, float] = field(default_factory=dict)  # their weights (lambda_1, lambda_2)
    loss_pixels: dict[str, Tensor] = field(default_factory=dict)  # pixels each extra term averages over
    embeddings: Tensor | None = None  # [B, D, h, w] pixel embeddings (prototype head)
    proto_target: Tensor | None = None  # [B, h, w] assigned prototype within the class (training)


def segmentation_loss(output: HeadOutput, labels: Tensor, *, class_weight: Tensor | None = None,
                      ignore_index: int = 255, align_corners: bool = False) -> dict[str, Tensor]:
    """Eq. 13: ``CE + sum_j weight_j * term_j``; returns every term and ``total``."""
    terms = {"ce": ce_loss(output.logits, labels, weight=class_weight, ignore_index=ignore_index,
                           align_corners=align_corners)}
    total = terms["ce"]
    for name, value in output.losses.items():
        terms[name] = value
        total = total + output.loss_weights.get(name, 1.0) * value
    terms["total"] = total
    return terms
