"""Cityscapes (leftImg8bit + gtFine): labelIds -> 19 trainIds, everything else 255."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from protoseg.data.classes import read_table
from protoseg.data.formats.base import Format, files_by_stem, pair
from protoseg.data.image_io import apply_lut, read_label_png

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"


def _lut() -> np.ndarray:
    lut = np.full(256, -1, dtype=np.int32)
    for row in read_table("cityscapes_labels_all.tsv"):
        label_id, train_id = int(row["label_id"]), int(row["train_id"])
        if label_id >= 0:
            lut[label_id] = train_id if 0 <= train_id < 255 else 255
    return lut


LUT = _lut()
MAX_LABEL_ID = int(np.flatnonzero(LUT >= 0).max())


def list_samples(src: Path, split: str):
    image_dir, label_dir = src / "leftImg8bit" / split, src / "gtFine" / split
    images = files_by_stem(image_dir, IMAGE_SUFFIX, recursive=True)
    labels = files_by_stem(label_dir, LABEL_SUFFIX, recursive=True)

    def city(stem: str) -> str:
        return stem.split("_")[0]

    return pair(split, images, labels, image_dir, label_dir,
                lambda s: f"{city(s)}/{s}{LABEL_SUFFIX}", lambda s: f"{city(s)}/{s}{IMAGE_SUFFIX}")


def read_label(path: Path) -> np.ndarray:
    arr = read_label_png(path, modes=("L", "P"))
    return apply_lut(arr, LUT, path, f"Cityscapes labelIds 0..{MAX_LABEL_ID}").astype(np.uint8)


FORMAT = Format(
    name="cityscapes", splits=("train", "val"),
    required=("leftImg8bit/train", "leftImg8bit/val", "gtFine/train", "gtFine/val"),
    list_samples=list_samples, read_label=read_label, image_ext=".png")
