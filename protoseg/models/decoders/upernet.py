"""UperNet decoder (Xiao et al. 2018; MMSeg's ``UPerHead``): pyramid pooling on the deepest map plus
an FPN over all four, fused at 1/4 resolution."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import ConvBNReLU, resize


class PyramidPooling(nn.Module):
    """PSPNet's PPM: ``[B, c, h, w]`` -> for each scale s, adaptive average pool to s x s, 1x1
    conv-BN-ReLU to ``channels``, bilinear back to h x w -> ``[B, c + len(scales) * channels, h, w]``."""

    def __init__(self, *, in_channels: int, channels: int, scales: tuple[int, ...] = (1, 2, 3, 6),
                 align_corners: bool = False) -> None:
        super().__init__()
        self.scales = scales
        self.align_corners = align_corners
        self.convs = nn.ModuleList(ConvBNReLU(in_channels, channels, kernel_size=1) for _ in scales)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        pooled = [resize(conv(F.adaptive_avg_pool2d(x, s)), size, align_corners=self.align_corners)
                  for s, conv in zip(self.scales, self.convs)]
        return torch.cat([x, *pooled], dim=1)


class UperNetDecoder(nn.Module):
    """``forward(feats)``: four maps ``[B, c_i, H/s_i, W/s_i]`` -> ``[B, channels, H/4, W/4]``.

    PPM (scales 1, 2, 3, 6) and a 3x3 bottleneck on the deepest map; 1x1 laterals on the other three;
    top-down sum; 3x3 FPN convs; all levels upsampled to 1/4, concatenated, fused by a 3x3
    conv-BN-ReLU; dropout 0.1. ``channels`` 512 as in MMSeg's UperNet-Swin.
    """

    def __init__(self, *, in_channels: tuple[int, ...] | list[int], channels: int = 512,
                 pool_scales: tuple[int, ...] = (1, 2, 3, 6), dropout: float = 0.1,
                 align_corners: bool = False) -> None:
        super().__init__()
        self.out_channels = channels
        self.align_corners = align_corners
        self.ppm = PyramidPooling(in_channels=in_channels[-1], channels=channels, scales=pool_scales,
                                  align_corners=align_corners)
        self.ppm_bottleneck = ConvBNReLU(in_channels[-1] + len(pool_scales) * channels, channels, kernel_size=3)
        self.laterals = nn.ModuleList(ConvBNReLU(c, channels, kernel_size=1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvBNReLU(channels, channels, kernel_size=3) for _ in in_channels[:-1])
        self.fpn_bottleneck = ConvBNReLU(len(in_channels) * channels, channels, kernel_size=3)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, feats: list[Tensor]) -> Tensor:
        laterals = [lat(f) for lat, f in zip(self.laterals, feats[:-1])]
        laterals.append(self.ppm_bottleneck(self.ppm(feats[-1])))
        for i in range(len(laterals) - 1, 0, -1):  # top-down
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[-2:],
                                                       align_corners=self.align_corners)
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals[:-1])] + [laterals[-1]]
        size = outs[0].shape[-2:]
        outs = [resize(x, size, align_corners=self.align_corners) for x in outs]
        return self.dropout(self.fpn_bottleneck(torch.cat(outs, dim=1)))
