"""The recipe's data pipelines (``shared/spec/recipes.md``), as MMSegmentation runs them.

Train: resize to base scale x ratio (keep aspect) -> random crop with cat_max_ratio -> horizontal
flip -> photometric distortion -> normalise -> pad to the crop (image 0, label ignore).
Test: resize to the test scale (keep aspect) -> normalise; the label stays at its own resolution.

Images are uint8 HxWx3 RGB numpy arrays, labels integer HxW arrays. Randomness comes only from the
``np.random.Generator`` passed in, so a sample's augmentation is fixed by (seed, epoch, index).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
# the release's normalisation (openseg.pytorch: BGR, ImageNet mean/std on [0, 1]); protoseg.data.openseg
OPENSEG_MEAN = (0.485, 0.456, 0.406)
OPENSEG_STD = (0.229, 0.224, 0.225)


def normalise_openseg(img: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 RGB -> float32 3xHxW in BGR order, ``(x / 255 - mean) / std`` per channel."""
    t = torch.from_numpy(np.ascontiguousarray(img[..., ::-1])).permute(2, 0, 1).float() / 255.0
    return (t - torch.tensor(OPENSEG_MEAN).view(3, 1, 1)) / torch.tensor(OPENSEG_STD).view(3, 1, 1)


def rescale_size(w: int, h: int, scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv's keep-ratio rule: the largest size with long side <= max(scale), short <= min(scale)."""
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(w * factor + 0.5), int(h * factor + 0.5)


def _linear_taps(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Half-pixel-centre source taps (i0, i1) and the weight of i1 for each output index."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    return i0, np.minimum(i0 + 1, n_in - 1), src - i0


def resize_image(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Bilinear resize (no antialiasing, half-pixel centres, as cv2.INTER_LINEAR).

    Written in numpy on purpose: torch's CPU bilinear kernel rounds differently with the number
    of threads, so the same sample would get other pixels in a 1-thread loader worker than in a
    multi-threaded process; this one gives the same bytes at any thread count.
    """
    if img.shape[:2] == (h, w):
        return img
    y0, y1, wy = _linear_taps(h, img.shape[0])
    x0, x1, wx = _linear_taps(w, img.shape[1])
    f = img.astype(np.float64)
    rows = f[y0] * (1.0 - wy)[:, None, None] + f[y1] * wy[:, None, None]
    out = rows[:, x0] * (1.0 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def resize_nearest(label: np.ndarray, w: int, h: int) -> np.ndarray:
    """Nearest resize as cv2.INTER_NEAREST (source index floor(dst * scale))."""
    if label.shape == (h, w):
        return label
    ys = np.minimum((np.arange(h) * (label.shape[0] / h)).astype(np.int64), label.shape[0] - 1)
    xs = np.minimum((np.arange(w) * (label.shape[1] / w)).astype(np.int64), label.shape[1] - 1)
    return label[ys[:, None], xs[None, :]]


def random_crop_box(rng: np.random.Generator, h: int, w: int, crop: tuple[int, int]):
    oy = int(rng.integers(0, max(h - crop[0], 0) + 1))
    ox = int(rng.integers(0, max(w - crop[1], 0) + 1))
    return oy, min(oy + crop[0], h), ox, min(ox + crop[1], w)


def cat_max_ratio_crop(rng: np.random.Generator, label: np.ndarray, crop: tuple[int, int],
                       cat_max_ratio: float, ignore_index: int, tries: int = 10):
    """MMSegmentation's RandomCrop box: re-draw (up to ``tries`` times) while one class covers
    ``cat_max_ratio`` or more of the non-ignored pixels, or fewer than two classes are present."""
    h, w = label.shape
    box = random_crop_box(rng, h, w, crop)
    if cat_max_ratio < 1.0:
        for _ in range(tries):
            y1, y2, x1, x2 = box
            values, counts = np.unique(label[y1:y2, x1:x2], return_counts=True)
            counts = counts[values != ignore_index]
            if len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio:
                break
            box = random_crop_box(rng, h, w, crop)
    return box


# ---- photometric distortion (cv2's 8-bit HSV: H in [0, 180), S and V in [0, 255]) --------------
def rgb_to_hsv(img: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 HSV with cv2's 8-bit ranges."""
    rgb = img.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(-1)
    delta = v - rgb.min(-1)
    s = delta * np.float32(255.0) / np.maximum(v, np.float32(1e-6))
    safe = np.maximum(delta, np.float32(1e-6))
    h = np.where(v == r, (g - b) / safe, np.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h = np.where(delta > 0, np.mod(h * np.float32(30.0), np.float32(180.0)), np.float32(0.0))
    return np.stack([h, s, v], axis=-1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """float HSV (cv2's 8-bit ranges) -> uint8 RGB, via f(n) = v - v*s*clip(min(k, 4-k), 0, 1),
    k = (n + h/30) mod 6 for n = 5, 3, 1."""
    h, s, v = hsv[..., 0] / np.float32(30.0), hsv[..., 1] / np.float32(255.0), hsv[..., 2]
    out = np.empty(hsv.shape, dtype=np.float32)
    for c, n in enumerate((5.0, 3.0, 1.0)):
        k = np.mod(h + np.float32(n), np.float32(6.0))
        out[..., c] = v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _convert(x: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    return np.clip(x.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def photometric_distortion(rng: np.random.Generator, img: np.ndarray, *, brightness_delta: int = 32,
                           contrast: tuple[float, float] = (0.5, 1.5),
                           saturation: tuple[float, float] = (0.5, 1.5),
                           hue_delta: int = 18) -> np.ndarray:
    """MMSegmentation's PhotoMetricDistortion: each step with probability 0.5, contrast either
    before or after the HSV steps."""
    if rng.integers(2):
        img = _convert(img, beta=rng.uniform(-brightness_delta, brightness_delta))
    contrast_first = bool(rng.integers(2))
    if contrast_first and rng.integers(2):
        img = _convert(img, alpha=rng.uniform(*contrast))
    do_saturation, do_hue = bool(rng.integers(2)), bool(rng.integers(2))
    if do_saturation or do_hue:  # one HSV round trip for both (MMSegmentation converts twice)
        hsv = rgb_to_hsv(img)
        if do_saturation:
            hsv[..., 1] = np.clip(np.trunc(hsv[..., 1]) * rng.uniform(*saturation), 0, 255)
        if do_hue:
            hsv[..., 0] = (np.round(hsv[..., 0]) + int(rng.integers(-hue_delta, hue_delta))) % 180
        img = hsv_to_rgb(hsv)
    if not contrast_first and rng.integers(2):
        img = _convert(img, alpha=rng.uniform(*contrast))
    return img


def normalise(img: np.ndarray, mean=MEAN, std=STD) -> torch.Tensor:
    """uint8 HxWx3 -> float32 3xHxW, (x - mean) / std per channel."""
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float()
    return (t - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


@dataclasses.dataclass(frozen=True)
class TrainPipeline:
    """The training pipeline; sizes (height, width), base scale (long, short)."""

    crop_size: tuple[int, int]
    base_scale: tuple[int, int]
    ignore_index: int
    ratio_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float = 0.75
    flip_prob: float = 0.5
    photometric: bool = True
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD
    normalisation: str = "mmseg"  # mmseg (RGB, MEAN/STD) | openseg (the release's, protoseg.data.openseg)

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> dict:
        """-> {"image": float32 [3, crop_h, crop_w], "label": int64 [crop_h, crop_w]}"""
        ratio = rng.uniform(*self.ratio_range)
        scale = (int(self.base_scale[0] * ratio), int(self.base_scale[1] * ratio))
        w, h = rescale_size(image.shape[1], image.shape[0], scale)
        image, label = resize_image(image, w, h), resize_nearest(label, w, h)
        y1, y2, x1, x2 = cat_max_ratio_crop(rng, label, self.crop_size, self.cat_max_ratio,
                                            self.ignore_index)
        image, label = image[y1:y2, x1:x2], label[y1:y2, x1:x2]
        if rng.random() < self.flip_prob:
            image, label = image[:, ::-1], label[:, ::-1]
        if self.photometric:
            image = photometric_distortion(rng, np.ascontiguousarray(image))
        img = _normalise(image, self.mean, self.std, self.normalisation)
        lab = torch.from_numpy(np.ascontiguousarray(label).astype(np.int64))
        ph, pw = self.crop_size[0] - img.shape[1], self.crop_size[1] - img.shape[2]
        if ph > 0 or pw > 0:  # pad bottom/right: image 0 (after normalising), label ignore
            img = F.pad(img, (0, max(pw, 0), 0, max(ph, 0)), value=0.0)
            lab = F.pad(lab, (0, max(pw, 0), 0, max(ph, 0)), value=self.ignore_index)
        return {"image": img, "label": lab}


@dataclasses.dataclass(frozen=True)
class TestPipeline:
    """Single-scale test pipeline: keep-ratio resize to ``test_scale`` (long, short), normalise."""

    test_scale: tuple[int, int]
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD
    normalisation: str = "mmseg"

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator | None = None) -> dict:
        """-> {"image": float32 [3, h', w'], "label": int64 [H, W] at the original resolution}"""
        w, h = rescale_size(image.shape[1], image.shape[0], self.test_scale)
        img = _normalise(resize_image(image, w, h), self.mean, self.std, self.normalisation)
        return {"image": img, "label": torch.from_numpy(label.astype(np.int64))}


def _normalise(img: np.ndarray, mean, std, normalisation: str) -> torch.Tensor:
    if normalisation == "openseg":
        return normalise_openseg(img)
    return normalise(img, mean, std)
