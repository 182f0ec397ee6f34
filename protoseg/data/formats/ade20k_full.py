"""ADE20K-Full (release ADE20K_2021_17_01): RGB ``_seg.png`` class masks -> the 847 MaskFormer classes.

Class id = (R // 10) * 256 + G (0 = unlabelled), i.e. the ``objectnames`` index + 1 of
``index_ade20k.pkl``. The 847 ids of ``ade20k_full_847.tsv`` map to train ids 0..846; every other
id becomes 65535 (uint16 labels), as MaskFormer's ``prepare_ade20k_full_sem_seg.py`` does.
"""
from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np

from protoseg.config.datasets import WIDE_IGNORE_INDEX
from protoseg.data.classes import read_table
from protoseg.data.errors import DataError
from protoseg.data.formats.base import Format, Sample, pair
from protoseg.data.image_io import apply_lut, decode_image

IGNORE = WIDE_IGNORE_INDEX
NUM_CATEGORIES = 3688  # categories of the 2021_17_01 release; larger decoded ids are corrupt labels
INDEX_FILE = "index_ade20k.pkl"
SEG_SUFFIX = "_seg.png"


def _lut() -> np.ndarray:
    lut = np.full(NUM_CATEGORIES + 1, IGNORE, dtype=np.int32)
    for row in read_table("ade20k_full_847.tsv"):
        lut[int(row["ade_id"])] = int(row["train_id"])
    return lut


LUT = _lut()


# the globals an index_ade20k.pkl may name (numpy 1.x writes numpy.core.*, numpy 2.x numpy._core.*):
# arrays, dtypes, scalars and builtin containers. Anything else (os.system, eval, ...) is refused.
_NUMPY_GLOBALS = {("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer")}
_SAFE_GLOBALS = {("numpy", "ndarray"), ("numpy", "dtype")} | {
    (mod, n) for mod in ("builtins", "__builtin__") for n in ("dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray",
                              "int", "float", "complex", "bool")} | {
    ("_codecs", "encode")} | {  # protocol 2 writes bytes as _codecs.encode(str, "latin1")
    (f"numpy.{core}.{mod}", name) for core in ("core", "_core") for mod, name in _NUMPY_GLOBALS}


_HAS_CORE2 = importlib.util.find_spec("numpy._core") is not None


class IndexUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` allowing only the types ADE20K-Full's index holds (``_SAFE_GLOBALS``):
    loading a crafted file never runs its code."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load the global {module}.{name} (the index holds only "
                                         "numpy arrays and builtin containers)")
        if module.startswith("numpy.core.") and _HAS_CORE2:  # numpy 2 moved numpy.core to numpy._core
            module = "numpy._core." + module[len("numpy.core."):]
        return super().find_class(module, name)


def load_index(src: Path) -> dict:
    path = src / INDEX_FILE
    try:
        with open(path, "rb") as f:
            index = IndexUnpickler(f).load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, KeyError) as err:
        raise DataError(f"{path}: cannot read the ADE20K index ({err})") from None
    if not isinstance(index, dict):
        raise DataError(f"{path}: expected the index_ade20k.pkl dict, got a {type(index).__name__}")
    for key in ("filename", "folder", "objectnames"):
        if key not in index:
            raise DataError(f"{path}: key {key!r} missing, expected the index_ade20k.pkl dict")
    if len(index["filename"]) != len(index["folder"]):
        raise DataError(f"{path}: {len(index['filename'])} filenames but {len(index['folder'])} folders")
    return index


def resolve_folder(src: Path, folder: str) -> Path:
    """Index folders read 'ADE20K_2021_17_01/images/ADE/training/...': rebase them onto ``src``."""
    folder = str(folder).replace("\\", "/")
    pos = folder.find("images/ADE/")
    if pos < 0:
        raise DataError(f"{src / INDEX_FILE}: folder {folder!r} does not contain 'images/ADE/'")
    return src / folder[pos:]


def split_of(filename: str) -> str:
    # MaskFormer: split = "validation" if file_name.split("_")[1] == "val" else "training"
    parts = filename.split("_")
    return "val" if len(parts) > 1 and parts[1] == "val" else "train"


def list_samples(src: Path, split: str):
    index = load_index(src)
    sub = "training" if split == "train" else "validation"
    images, labels = {}, {}
    for folder, filename in zip(index["folder"], index["filename"]):
        if split_of(filename) != split:
            continue
        stem = filename.rsplit(".", 1)[0]
        image = resolve_folder(src, folder) / filename
        if not image.is_file():
            raise DataError(f"{src / INDEX_FILE} lists {filename} but {image} does not exist")
        if stem in images:
            raise DataError(f"{src / INDEX_FILE}: {filename} listed twice")
        images[stem] = image
        seg = image.with_name(stem + SEG_SUFFIX)
        if seg.is_file():
            labels[stem] = seg
    split_dir = src / "images" / "ADE" / sub
    for seg in split_dir.rglob("*" + SEG_SUFFIX):
        stem = seg.name[: -len(SEG_SUFFIX)]
        if stem not in labels and not seg.name.startswith("."):
            labels[stem] = seg  # a mask whose image is missing or unindexed: reported by pair()
    return pair(split, images, labels, split_dir, split_dir,
                lambda s: f"<scene>/{s}{SEG_SUFFIX} beside the image",
                lambda s: f"{labels[s].with_name(s + '.jpg')}")


def decode_class_mask(rgb: np.ndarray) -> np.ndarray:
    r, g = rgb[..., 0].astype(np.int32), rgb[..., 1].astype(np.int32)
    return (r // 10) * 256 + g


def read_label(path: Path) -> np.ndarray:
    img = decode_image(Path(path).read_bytes(), path)
    if img.mode != "RGB":
        raise DataError(f"{path}: _seg.png has mode {img.mode}, expected RGB (class = R/10*256+G)")
    ids = decode_class_mask(np.asarray(img))
    return apply_lut(ids, LUT, path, f"class ids 0..{NUM_CATEGORIES} (R/10*256+G)").astype(np.uint16)


FORMAT = Format(
    name="ade20k-full", splits=("train", "val"),
    required=(INDEX_FILE, "images/ADE/training", "images/ADE/validation"),
    list_samples=list_samples, read_label=read_label, label_dtype=np.uint16, ignore_index=IGNORE,
    max_short_side=512)

__all__ = ["FORMAT", "Sample", "LUT", "decode_class_mask"]
