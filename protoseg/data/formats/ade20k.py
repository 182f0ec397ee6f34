"""ADE20K SceneParsing (ADEChallengeData2016): 150 classes, 8-bit labels 0..150, 0 = other."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from protoseg.data.formats.base import Format, pair_folders
from protoseg.data.image_io import apply_lut, read_label_png

OFFICIAL_SPLITS = {"train": "training", "val": "validation"}


def _lut() -> np.ndarray:
    # reduce_zero_label: 0 -> 255 (ignore), k -> k-1; values above 150 must not occur
    lut = np.full(256, -1, dtype=np.int32)
    lut[0] = 255
    lut[1:151] = np.arange(150)
    return lut


LUT = _lut()


def list_samples(src: Path, split: str):
    sub = OFFICIAL_SPLITS[split]
    image_dir, label_dir = src / "images" / sub, src / "annotations" / sub
    return pair_folders(split, image_dir, label_dir)


def read_label(path: Path) -> np.ndarray:
    arr = read_label_png(path, modes=("L", "P"))
    return apply_lut(arr, LUT, path, "0 (other) or 1..150").astype(np.uint8)


FORMAT = Format(
    name="ade20k", splits=("train", "val"),
    required=("images/training", "images/validation", "annotations/training", "annotations/validation"),
    list_samples=list_samples, read_label=read_label)
