"""The official ProtoSeg release's data pipelines (openseg.pytorch, ``configs/cityscapes/H_48_D_4_proto.json``).

Train (``train_trans``: random_resize, random_crop, random_hflip, random_brightness):
- resize the image itself (no base scale) by ``s`` in [0.5, 2.0] with aspect ``a`` in [0.9, 1.1]:
  width x ``sqrt(a) * s``, height x ``s / sqrt(a)``, truncated; image bicubic (cv2.INTER_CUBIC), label nearest;
- random crop to the crop size (at most the image), no cat_max_ratio re-draw;
- horizontal flip p = 0.5; brightness: an integer shift in [-10, 10] on every pixel, always
  (``ratio`` 1.0), no contrast/saturation/hue;
- normalise (``normalise_openseg``); pad to the crop at a random offset (``pad_mode: random``), image 0,
  label ignore.
Test (``val``: ``only_pad`` to 2048x1024, i.e. the Cityscapes image as it is): no resize, normalise.

Normalisation (``input_mode: BGR`` with cv2 reading, ``normalize``): the channels in BGR order, divided
by 255, minus mean (0.485, 0.456, 0.406), over std (0.229, 0.224, 0.225), the triples applied in that
channel order as the config lists them.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F

from .transforms import OPENSEG_MEAN, OPENSEG_STD, normalise, normalise_openseg, resize_nearest

__all__ = ["OPENSEG_MEAN", "OPENSEG_STD", "NativeTestPipeline", "OpensegTrainPipeline", "normalise_openseg",
           "resize_bicubic"]


def resize_bicubic(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Bicubic resize (a = -0.75 and half-pixel centres, as cv2.INTER_CUBIC), rounded to uint8."""
    if img.shape[:2] == (h, w):
        return img
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=(h, w), mode="bicubic", align_corners=False)
    return t[0].permute(1, 2, 0).round_().clamp_(0, 255).to(torch.uint8).numpy()


@dataclasses.dataclass(frozen=True)
class OpensegTrainPipeline:
    """The release's training pipeline; ``crop_size`` (height, width)."""

    crop_size: tuple[int, int]
    ignore_index: int
    scale_range: tuple[float, float] = (0.5, 2.0)
    aspect_range: tuple[float, float] = (0.9, 1.1)
    flip_prob: float = 0.5
    brightness_shift: int = 10
    photometric: bool = True  # the brightness shift
    normalisation: str = "openseg"  # openseg | mmseg

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> dict:
        h, w = label.shape
        s, a = rng.uniform(*self.scale_range), rng.uniform(*self.aspect_range)
        nw, nh = int(w * math.sqrt(a) * s), int(h * math.sqrt(1.0 / a) * s)
        image, label = resize_bicubic(image, nw, nh), resize_nearest(label, nw, nh)
        ch, cw = min(self.crop_size[0], nh), min(self.crop_size[1], nw)
        x, y = int(rng.integers(0, nw - cw + 1)), int(rng.integers(0, nh - ch + 1))
        image, label = image[y:y + ch, x:x + cw], label[y:y + ch, x:x + cw]
        if rng.random() < self.flip_prob:
            image, label = image[:, ::-1], label[:, ::-1]
        if self.photometric:
            shift = int(rng.integers(-self.brightness_shift, self.brightness_shift + 1))
            image = np.clip(image.astype(np.int16) + shift, 0, 255).astype(np.uint8)
        img = normalise_openseg(image) if self.normalisation == "openseg" else normalise(np.ascontiguousarray(image))
        lab = torch.from_numpy(np.ascontiguousarray(label).astype(np.int64))
        ph, pw = self.crop_size[0] - ch, self.crop_size[1] - cw
        if ph > 0 or pw > 0:  # random placement inside the crop (pad_mode: random)
            top, left = int(rng.integers(0, ph + 1)), int(rng.integers(0, pw + 1))
            img = F.pad(img, (left, pw - left, top, ph - top), value=0.0)
            lab = F.pad(lab, (left, pw - left, top, ph - top), value=self.ignore_index)
        return {"image": img, "label": lab}


@dataclasses.dataclass(frozen=True)
class NativeTestPipeline:
    """Test at the image's own size (the release: ``only_pad`` to 2048x1024 = a Cityscapes image)."""

    normalisation: str = "openseg"

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator | None = None) -> dict:
        img = normalise_openseg(image) if self.normalisation == "openseg" else normalise(image)
        return {"image": img, "label": torch.from_numpy(label.astype(np.int64))}
