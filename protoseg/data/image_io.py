"""Reading and encoding images and label maps with PIL, with errors that name the file."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from protoseg.data.errors import DataError


def decode_image(data: bytes, path: str | Path) -> Image.Image:
    """Fully decode image bytes (so truncation is caught); ``path`` is named in errors."""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: corrupt or truncated image, expected a decodable image ({err})") from err
    return img


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as uint8 RGB, HxWx3."""
    return np.array(decode_image(Path(path).read_bytes(), path).convert("RGB"))


def read_label_png(path: str | Path, *, modes: tuple[str, ...] = ("L", "P", "I;16", "I")) -> np.ndarray:
    """A single-channel label PNG as a 2-D integer array (uint8, or int32/uint16 for 16-bit)."""
    img = decode_image(Path(path).read_bytes(), path)
    if img.mode not in modes:
        raise DataError(f"{path}: label image has mode {img.mode}, expected one of {modes}")
    arr = np.array(img)
    if arr.ndim != 2:
        raise DataError(f"{path}: label image has shape {arr.shape}, expected a single channel")
    return arr


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.size
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{path}: cannot read image header ({err})") from err


def encode_png(arr: np.ndarray) -> bytes:
    """A uint8 (8-bit) or uint16 (16-bit) 2-D array, or uint8 HxWx3, as PNG bytes."""
    if arr.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"encode_png takes uint8 or uint16, got {arr.dtype}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def encode_jpeg(arr: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def apply_lut(values: np.ndarray, lut: np.ndarray, path: str | Path, expected: str) -> np.ndarray:
    """Map label values through ``lut``; entries < 0 mark values that must not occur.

    Raises ``DataError`` naming the file, the offending values and ``expected``.
    """
    values = np.asarray(values)
    if values.size and (values.min() < 0 or values.max() >= len(lut)):
        bad = np.unique(values[(values < 0) | (values >= len(lut))])
        raise DataError(f"{path}: label values {bad[:10].tolist()} outside the dataset's range, "
                        f"expected {expected}")
    out = lut[values]
    if out.size and out.min() < 0:
        bad = np.unique(values[out < 0])
        raise DataError(f"{path}: label values {bad[:10].tolist()} outside the dataset's range, "
                        f"expected {expected}")
    return out
