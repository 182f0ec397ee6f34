"""The auxiliary FCN head on stage 3 (deep supervision, training only), always parametric."""
from __future__ import annotations

from torch import Tensor, nn

from protoseg.heads import SoftmaxHead

from .decoders import FCNDecoder


class AuxiliaryHead(nn.Module):
    """``forward(feats)``: ``feats[in_index]: [B, in_channels, h, w]`` -> one 3x3 conv-BN-ReLU to
    ``channels``, dropout 0.1, its own softmax classifier -> logits ``[B, num_classes, h, w]``.

    MMSeg's ResNet and UperNet recipes: stage 3 (1024 -> 256 on ResNet-101), loss weight 0.4. Its
    parameters count towards the model's (the paper's ``# Param`` includes them) even though it is
    dropped at inference.
    """

    def __init__(self, *, in_channels: int, num_classes: int, channels: int = 256, in_index: int = 2,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.decoder = FCNDecoder(in_channels=in_channels, channels=channels, in_index=in_index, num_convs=1,
                                  concat_input=False, dropout=dropout)
        self.classifier = SoftmaxHead(channels, num_classes)

    def forward(self, feats: list[Tensor]) -> Tensor:
        return self.classifier(self.decoder(feats)).logits
