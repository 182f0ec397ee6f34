"""FCN decoder (Long et al.; MMSeg's ``FCNHead``), used as the main head on ResNet and as the
auxiliary head on stage 3."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..layers import ConvBNReLU


class FCNDecoder(nn.Module):
    """``num_convs`` conv-BN-ReLU on one backbone map, optional concat with the input, dropout.

    ``forward(feats)`` takes the backbone's list and uses ``feats[in_index]: [B, in_channels, h, w]``;
    returns ``[B, channels, h, w]``, the features before the classifier (D = ``channels``).
    ResNet-101 main head: 2048 -> 512, two 3x3 convs, ``concat_input`` (a third 3x3 conv on
    ``[input, convs]``), dropout 0.1. Auxiliary head: 1024 -> 256, one conv, no concat.
    """

    def __init__(self, *, in_channels: int, channels: int = 512, in_index: int = -1, num_convs: int = 2,
                 kernel_size: int = 3, concat_input: bool = True, dropout: float = 0.1) -> None:
        super().__init__()
        if num_convs < 1:
            raise ValueError(f"FCNDecoder num_convs={num_convs!r}: expected >= 1")
        self.in_index = in_index
        self.out_channels = channels
        self.convs = nn.Sequential(*[
            ConvBNReLU(in_channels if i == 0 else channels, channels, kernel_size=kernel_size)
            for i in range(num_convs)
        ])
        self.conv_cat = (ConvBNReLU(in_channels + channels, channels, kernel_size=kernel_size)
                         if concat_input else None)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, feats: list[Tensor]) -> Tensor:
        x = feats[self.in_index]
        out = self.convs(x)
        if self.conv_cat is not None:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        return self.dropout(out)

