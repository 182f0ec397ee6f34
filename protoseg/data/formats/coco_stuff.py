"""COCO-Stuff: the 10k release (.mat, values 1..182, 0 = unlabelled) and 164k (png, 0..181, 255)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from protoseg.data.classes import read_table
from protoseg.data.errors import DataError
from protoseg.data.formats.base import Format, pair, pair_folders
from protoseg.data.image_io import apply_lut, read_label_png


def _luts() -> tuple[np.ndarray, np.ndarray]:
    lut10k = np.full(256, -1, dtype=np.int32)
    lut10k[0:183] = 255  # 0 = unlabelled; the 11 thing ids without masks are ignored too
    lut164k = np.full(256, -1, dtype=np.int32)
    lut164k[0:182] = 255
    lut164k[255] = 255
    for row in read_table("coco_stuff_171.tsv"):
        lut10k[int(row["label_value_10k"])] = int(row["train_id"])
        lut164k[int(row["label_value_164k"])] = int(row["train_id"])
    return lut10k, lut164k


LUT_10K, LUT_164K = _luts()


# ---- 10k --------------------------------------------------------------------------------------
def read_image_list(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"missing image list {path}")
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def list_samples_10k(src: Path, split: str):
    stems = read_image_list(src / "imageLists" / f"{split}.txt")
    image_dir, label_dir = src / "images", src / "annotations"
    images = {s: image_dir / f"{s}.jpg" for s in stems if (image_dir / f"{s}.jpg").is_file()}
    labels = {s: label_dir / f"{s}.mat" for s in stems if (label_dir / f"{s}.mat").is_file()}
    missing_both = [s for s in stems if s not in images and s not in labels]
    if missing_both:
        raise DataError(f"{src / 'imageLists' / (split + '.txt')} lists {missing_both[0]!r} but neither "
                        f"{image_dir / (missing_both[0] + '.jpg')} nor its .mat annotation exists "
                        f"({len(missing_both)} such entries)")
    return pair(split, images, labels, image_dir, label_dir,
                lambda s: s + ".mat", lambda s: s + ".jpg")


def read_label_10k(path: Path) -> np.ndarray:
    try:
        mat = scipy.io.loadmat(str(path), variable_names=["S"])
    except Exception as err:  # scipy raises several types for corrupt files
        raise DataError(f"{path}: cannot read MATLAB annotation ({err})") from err
    if "S" not in mat:
        raise DataError(f"{path}: no variable 'S' (the 10k annotation map) in the .mat file")
    seg = np.asarray(mat["S"])
    if seg.ndim != 2 or seg.dtype.kind not in "iu":
        raise DataError(f"{path}: 'S' has shape {seg.shape} dtype {seg.dtype}, expected a 2-D integer map")
    return apply_lut(seg.astype(np.int64), LUT_10K, path, "0 (unlabelled) or 1..182").astype(np.uint8)


FORMAT_10K = Format(
    name="coco-stuff-10k", splits=("train", "test"),
    required=("images", "annotations", "imageLists/train.txt", "imageLists/test.txt"),
    list_samples=list_samples_10k, read_label=read_label_10k)


# ---- 164k -------------------------------------------------------------------------------------
OFFICIAL_SPLITS_164K = {"train": "train2017", "val": "val2017"}


def list_samples_164k(src: Path, split: str):
    sub = OFFICIAL_SPLITS_164K[split]
    image_dir, label_dir = src / "images" / sub, src / "annotations" / sub
    return pair_folders(split, image_dir, label_dir)


def read_label_164k(path: Path) -> np.ndarray:
    arr = read_label_png(path, modes=("L", "P"))
    return apply_lut(arr, LUT_164K, path, "0..181 or 255 (unlabelled)").astype(np.uint8)


FORMAT_164K = Format(
    name="coco-stuff-164k", splits=("train", "val"),
    required=("images/train2017", "images/val2017", "annotations/train2017", "annotations/val2017"),
    list_samples=list_samples_164k, read_label=read_label_164k)
