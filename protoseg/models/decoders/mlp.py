"""SegFormer's all-MLP decoder (Xie et al. 2021), without its classifier."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..layers import ConvBNReLU, resize


class MLPDecoder(nn.Module):
    """``forward(feats)``: each ``[B, c_i, H/s_i, W/s_i]`` -> 1x1 conv-BN-ReLU to ``channels``
    (MMSegmentation's ``SegFormerHead``: a ``ConvModule`` per stage, conv without bias as BN follows)
    -> bilinear to the first map's size -> concatenate (deepest first) -> 1x1 conv-BN-ReLU fuse ->
    dropout -> ``[B, channels, H/4, W/4]``. 768 channels for MiT-B2..B5 and Swin, 256 for MiT-B0/B1.
    Learnable parameters: ``channels * (sum(c_i) + 8) + 4 * channels^2 + 2 * channels`` (four stages).
    """

    def __init__(self, *, in_channels: tuple[int, ...] | list[int], channels: int = 768,
                 dropout: float = 0.1, align_corners: bool = False) -> None:
        super().__init__()
        self.out_channels = channels
        self.align_corners = align_corners
        self.linears = nn.ModuleList(ConvBNReLU(c, channels, kernel_size=1) for c in in_channels)
        self.fuse = ConvBNReLU(len(in_channels) * channels, channels, kernel_size=1)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, feats: list[Tensor]) -> Tensor:
        size = feats[0].shape[-2:]
        x = [resize(lin(f), size, align_corners=self.align_corners) for lin, f in zip(self.linears, feats)]
        return self.dropout(self.fuse(torch.cat(x[::-1], dim=1)))
