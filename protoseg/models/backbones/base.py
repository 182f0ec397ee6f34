"""What every backbone provides: multi-scale feature maps with known channels and strides."""
from __future__ import annotations

from torch import Tensor, nn

from ..layers import crop_to, pad_to_multiple


class Backbone(nn.Module):
    """Base class: ``forward(images [B, 3, H, W]) -> [f_1, ..., f_4]``, ``f_i: [B, out_channels[i],
    ceil(H / strides[i]), ceil(W / strides[i])]``.

    Subclasses implement ``forward_features`` on an input whose sides are multiples of
    ``size_divisor`` (Swin and timm's HRNet need that); ``forward`` pads the image with zeros at the
    bottom/right and crops every map back to the cells that cover the original image.
    """

    out_channels: tuple[int, ...]
    strides: tuple[int, ...]
    size_divisor: int = 1

    def forward_features(self, images: Tensor) -> list[Tensor]:
        raise NotImplementedError

    def forward(self, images: Tensor) -> list[Tensor]:
        size = tuple(images.shape[-2:])
        feats = self.forward_features(pad_to_multiple(images, self.size_divisor))
        if self.size_divisor > 1:
            feats = [crop_to(f, size, s) for f, s in zip(feats, self.strides)]
        return feats
