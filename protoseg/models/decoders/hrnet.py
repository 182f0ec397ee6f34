"""HRNetV2's representation head: all four branches upsampled to 1/4 and concatenated."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..layers import ConvBNReLU, resize


class HRNetConcatDecoder(nn.Module):
    """``forward(feats)``: ``[B, c_i, H/s_i, W/s_i]`` for i = 1..4 -> bilinear to the first map's size,
    concatenate (``sum(c_i)`` channels: 720 for W48) -> one conv-BN-ReLU (1x1 by default, MMSeg's
    ``fcn_hr48``; the official ProtoSeg code uses 3x3 and dropout 0.1) -> ``[B, channels, H/4, W/4]``.
    """

    def __init__(self, *, in_channels: tuple[int, ...] | list[int], channels: int | None = None,
                 kernel_size: int = 1, dropout: float = 0.0, align_corners: bool = False) -> None:
        super().__init__()
        total = sum(in_channels)
        self.out_channels = channels = total if channels is None else channels
        self.align_corners = align_corners
        self.conv = ConvBNReLU(total, channels, kernel_size=kernel_size)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, feats: list[Tensor]) -> Tensor:
        size = feats[0].shape[-2:]
        x = torch.cat([resize(f, size, align_corners=self.align_corners) for f in feats], dim=1)
        return self.dropout(self.conv(x))
