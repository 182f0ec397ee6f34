"""Resizing helpers: bilinear resize to a size, padding to a multiple, cropping back."""
from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor


def resize(x: Tensor, size: tuple[int, int] | list[int] | tuple, *, align_corners: bool = False) -> Tensor:
    """Bilinear resize of ``[B, C, h, w]`` to ``[B, C, *size]``; a no-op when the size already matches."""
    size = tuple(int(s) for s in size)
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Zero-pad ``[B, C, H, W]`` at the bottom and right so that H and W are multiples of ``multiple``."""
    if multiple <= 1:
        return x
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h))


def crop_to(x: Tensor, image_size: tuple[int, int], stride: int) -> Tensor:
    """Crop a stride-``stride`` map of a padded image to the ``ceil(H / stride) x ceil(W / stride)``
    cells that cover the unpadded ``image_size = (H, W)``."""
    h, w = (math.ceil(s / stride) for s in image_size)
    return x[..., :h, :w]
