"""The assembled model: backbone -> decoder -> head, plus the auxiliary head in training."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from protoseg.heads import HeadOutput

from .layers import resize


@dataclass
class SegmentationOutput:
    """What ``SegmentationModel.forward`` returns.

    ``head``: the head's ``HeadOutput`` (``logits [B, C, h, w]`` at decoder resolution, plus the
    prototype head's PPC/PPD terms in training); ``aux_logits``: ``[B, C, h3, w3]`` from the auxiliary
    head on stage 3, only in training mode and only for models that have one (else ``None``).
    """

    head: HeadOutput
    aux_logits: Tensor | None = None

    @property
    def logits(self) -> Tensor:
        return self.head.logits


class SegmentationModel(nn.Module):
    """Receives its parts by constructor injection; ``build_model`` assembles them from a config.

    ``forward(images [B, 3, H, W], labels [B, H, W] | None)`` -> ``SegmentationOutput``. Labels are
    passed to the head (the prototype head clusters and updates its prototypes in training).
    ``predict(images)`` -> class scores upsampled to ``[B, C, H, W]``.
    """

    def __init__(self, *, backbone: nn.Module, decoder: nn.Module, head: nn.Module,
                 aux_head: nn.Module | None = None, aux_loss_weight: float = 0.4,
                 align_corners: bool = False, config=None) -> None:
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder
        self.head = head
        self.aux_head = aux_head
        self.aux_loss_weight = aux_loss_weight
        self.align_corners = align_corners
        self.config = config  # the resolved ModelConfig it was built from (None when assembled by hand)
        self.backbone_frozen = False

    def freeze_backbone(self) -> "SegmentationModel":
        """Freeze the backbone: no gradients, and its normalisation layers keep their statistics
        (``train()`` leaves the backbone in eval mode). The mini scale's fine-tuning at
        ``optim.backbone_lr_mult = 0``."""
        self.backbone.requires_grad_(False)
        self.backbone_frozen = True
        return self.train(self.training)

    def train(self, mode: bool = True) -> "SegmentationModel":
        super().train(mode)
        if getattr(self, "backbone_frozen", False):
            self.backbone.eval()
        return self

    def forward(self, images: Tensor, labels: Tensor | None = None) -> SegmentationOutput:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not getattr(self, "backbone_frozen", False)):
            feats = self.backbone(images)
        out = self.head(self.decoder(feats), labels)
        aux = self.aux_head(feats) if self.aux_head is not None and self.training else None
        return SegmentationOutput(head=out, aux_logits=aux)

    def predict(self, images: Tensor) -> Tensor:
        """Class scores at image resolution, ``[B, C, H, W]`` (bilinear)."""
        logits = self(images).logits
        return resize(logits, images.shape[-2:], align_corners=self.align_corners)
