"""Whole-image and sliding-window inference (MMSegmentation's ``whole_inference`` /
``slide_inference``), returning logits resized to the label resolution.

``model_fn`` maps images ``[B, 3, h, w]`` to logits ``[B, C, h', w']`` (any output stride).
Every bilinear resize goes through the models' shared ``layers.resize`` with ``align_corners``
(pass the model's own, ``SegmentationModel.align_corners``, as training does: the official ProtoSeg
release resizes with ``align_corners=True``).
"""
from __future__ import annotations

from typing import Callable

import torch

from protoseg.models.layers.resize import resize

ModelFn = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def whole_inference(model_fn: ModelFn, image: torch.Tensor, out_size: tuple[int, int], *,
                    align_corners: bool = False) -> torch.Tensor:
    """[B, 3, h, w] -> [B, C, *out_size]: logits upsampled to the input, then to ``out_size``."""
    logits = resize(model_fn(image), image.shape[-2:], align_corners=align_corners)
    return resize(logits, out_size, align_corners=align_corners)


def slide_windows(h: int, w: int, crop: tuple[int, int], stride: tuple[int, int]):
    """The ``(y1, y2, x1, x2)`` windows of ``slide_inference``, in its order."""
    (ch, cw), (sh, sw) = crop, stride
    rows = max(h - ch + sh - 1, 0) // sh + 1
    cols = max(w - cw + sw - 1, 0) // sw + 1
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * sh + ch, h), min(c * sw + cw, w)
            yield max(y2 - ch, 0), y2, max(x2 - cw, 0), x2


@torch.no_grad()
def slide_inference(model_fn: ModelFn, image: torch.Tensor, num_classes: int, crop: tuple[int, int],
                    stride: tuple[int, int], out_size: tuple[int, int] | None = None, *,
                    align_corners: bool = False) -> torch.Tensor:
    """Average the logits of overlapping ``crop`` windows taken every ``stride`` (the last window of
    each row/column is shifted back to end at the border); then resize to ``out_size``."""
    b, _, h, w = image.shape
    logits = image.new_zeros((b, num_classes, h, w))
    count = image.new_zeros((1, 1, h, w))
    for y1, y2, x1, x2 in slide_windows(h, w, crop, stride):
        window = image[:, :, y1:y2, x1:x2]
        out = resize(model_fn(window), window.shape[-2:], align_corners=align_corners)
        if out.shape[1] != num_classes:
            raise ValueError(f"model_fn returned {out.shape[1]} channels, expected {num_classes}")
        logits[:, :, y1:y2, x1:x2] += out
        count[:, :, y1:y2, x1:x2] += 1
    logits = logits / count
    return resize(logits, out_size, align_corners=align_corners) if out_size is not None else logits


def inference(model_fn: ModelFn, image: torch.Tensor, spec, out_size: tuple[int, int], *,
              align_corners: bool = False) -> torch.Tensor:
    """Dispatch on ``spec.test_mode`` ("whole" or "slide")."""
    if spec.test_mode == "slide":
        return slide_inference(model_fn, image, spec.num_classes, spec.slide_crop, spec.slide_stride,
                               out_size, align_corners=align_corners)
    return whole_inference(model_fn, image, out_size, align_corners=align_corners)
