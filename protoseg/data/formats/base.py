"""What a dataset format provides to ``prepare``: layout check, sample listing, label decoding."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np

from protoseg.data.errors import DataError


@dataclasses.dataclass(frozen=True)
class Sample:
    """One image/label pair of the official layout and where it goes in the prepared root."""

    split: str  # prepared split name (train / val / test)
    stem: str  # unique within the split
    image: Path
    label: Path


@dataclasses.dataclass(frozen=True)
class Format:
    """An official on-disk format. Functions are module-level, so workers look formats up by name."""

    name: str
    splits: tuple[str, ...]  # prepared split names, in order
    required: tuple[str, ...]  # paths relative to --src that must exist
    list_samples: Callable[[Path, str], list[Sample]]
    read_label: Callable[[Path], np.ndarray]  # official label file -> train ids (label_dtype)
    label_dtype: type = np.uint8
    ignore_index: int = 255
    image_ext: str = ".jpg"
    max_short_side: int | None = None  # resize larger images (ADE20K-Full, as MaskFormer)

    def check_layout(self, src: Path) -> None:
        if not src.is_dir():
            raise DataError(f"--src {src}: not a directory")
        for rel in self.required:
            if not (src / rel).exists():
                raise DataError(f"--src {src} does not have the {self.name} layout: "
                                f"expected {src / rel} (missing '{rel}')")


def pair(split: str, images: dict[str, Path], labels: dict[str, Path],
         image_dir: Path, label_dir: Path, expect_label: Callable[[str], str],
         expect_image: Callable[[str], str]) -> list[Sample]:
    """Join images and labels by stem; an unpaired file is an error naming it and its missing twin."""
    problems = []
    for stem in sorted(set(images) - set(labels)):
        problems.append(f"image without label: {images[stem]} (expected {label_dir / expect_label(stem)})")
    for stem in sorted(set(labels) - set(images)):
        problems.append(f"label without image: {labels[stem]} (expected {image_dir / expect_image(stem)})")
    if problems:
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise DataError(f"split '{split}': {len(problems)} unpaired file(s):\n  "
                        + "\n  ".join(problems[:10]) + more)
    if not images:
        raise DataError(f"split '{split}' is empty: no images found under {image_dir}")
    return [Sample(split, s, images[s], labels[s]) for s in sorted(images)]


def pair_folders(split: str, image_dir: Path, label_dir: Path, image_ext: str = ".jpg",
                 label_ext: str = ".png") -> list[Sample]:
    """Pair ``image_dir/<stem><image_ext>`` with ``label_dir/<stem><label_ext>`` (see ``pair``)."""
    return pair(split, files_by_stem(image_dir, image_ext), files_by_stem(label_dir, label_ext),
                image_dir, label_dir, lambda s: s + label_ext, lambda s: s + image_ext)


def files_by_stem(folder: Path, suffix: str, recursive: bool = False) -> dict[str, Path]:
    """Files in ``folder`` ending in ``suffix``, keyed by the name without the suffix."""
    it = folder.rglob("*" + suffix) if recursive else folder.glob("*" + suffix)
    out: dict[str, Path] = {}
    for p in it:
        if p.name.startswith("."):
            continue
        stem = p.name[: -len(suffix)]
        if stem in out:
            raise DataError(f"duplicate file name {p.name}: {out[stem]} and {p}")
        out[stem] = p
    return out
