"""Convolution + BatchNorm + ReLU, MMSegmentation's ``ConvModule`` with its default norm and act."""
from __future__ import annotations

from torch import Tensor, nn


class ConvBNReLU(nn.Sequential):
    """``[B, in_channels, H, W] -> [B, out_channels, H', W']``: conv (no bias, BN follows), BN, ReLU.

    Padding keeps the spatial size for odd kernels at stride 1 (``dilation * (kernel_size // 2)``).
    Learnable parameters: ``in * out * k * k + 2 * out``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int = 1, stride: int = 1,
                 dilation: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                      padding=dilation * (kernel_size // 2), dilation=dilation, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
        nn.init.kaiming_normal_(self[0].weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102 - nn.Sequential's forward, typed
        return super().forward(x)
