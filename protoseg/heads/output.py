"""What every head returns, and the loss terms of Eq. 13 gathered from it."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from protoseg.method.losses import LossTerm, ce_loss, total_loss


@dataclass
class HeadOutput:
    """Class scores at feature resolution, plus what the auxiliary losses need in training."""

    logits: Tensor  # [B, C, h, w]
    losses: dict[str, LossTerm] = field(default_factory=dict)  # extra terms (ppc, ppd): value, weight, pixels
    embeddings: Tensor | None = None  # [B, D, h, w] pixel embeddings (prototype head)
    proto_target: Tensor | None = None  # [B, h, w] assigned prototype within the class (training)


def segmentation_loss(output: HeadOutput, labels: Tensor, *, class_weight: Tensor | None = None,
                      ignore_index: int = 255, align_corners: bool = False, aux_logits: Tensor | None = None,
                      aux_weight: float = 0.4, global_pixels: bool = False) -> dict[str, Tensor]:
    """The head's CE (Eq. 7, ``class_weight``-weighted if given), its extra terms, the unweighted
    auxiliary CE of ``aux_logits`` (weight ``aux_weight``) and their ``total`` (Eq. 13, ``total_loss``;
    ``global_pixels``: its DDP share-of-pixels weighting). Returns every term's value and ``total``."""
    labelled = (labels != ignore_index).sum()
    terms = {"ce": LossTerm(ce_loss(output.logits, labels, weight=class_weight, ignore_index=ignore_index,
                                    align_corners=align_corners), 1.0, labelled)}
    terms.update(output.losses)
    if aux_logits is not None:
        terms["aux"] = LossTerm(ce_loss(aux_logits, labels, ignore_index=ignore_index,
                                        align_corners=align_corners), aux_weight, labelled)
    values = {name: term.value for name, term in terms.items()}
    values["total"] = total_loss(terms, global_pixels=global_pixels)
    return values
