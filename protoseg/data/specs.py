"""What the training engine needs to know about each dataset: ``DatasetSpec`` and ``get_spec``.

A spec holds the class list (from ``protoseg/data/classes``), the ignore value of the prepared
labels, the label folder inside a prepared root, and the recipe's data settings
(``shared/spec/recipes.md``): base scale, ratio range, crop, test scale and test mode.
``mini=True`` gives the same dataset with sizes scaled for the miniature twins (``make-mini``).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from protoseg.config.datasets import WIDE_IGNORE_INDEX
from protoseg.data.classes import read_table
from protoseg.data.errors import DataError

DATASETS = ("ade20k", "ade20k-full", "cityscapes", "coco-stuff-10k", "coco-stuff-164k")
ADE_FULL_TOP_N = (150, 300, 500, 700, 847)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One dataset (or label set) as the engine sees it. Sizes are (height, width) unless noted."""

    name: str
    num_classes: int
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    ignore_index: int  # value of unlabelled pixels in the prepared labels and in loaded tensors
    label_dir: str = "labels"  # folder of the prepared root holding this label set
    train_split: str = "train"
    eval_split: str = "val"
    base_scale: tuple[int, int] = (2048, 512)  # (long, short) as MMSegmentation's Resize(scale=...)
    ratio_range: tuple[float, float] = (0.5, 2.0)
    crop_size: tuple[int, int] = (512, 512)
    cat_max_ratio: float = 0.75
    test_scale: tuple[int, int] = (2048, 512)  # (long, short): short side 512, long side <= 2048
    test_mode: str = "whole"  # "whole" or "slide"
    slide_crop: tuple[int, int] = (1024, 1024)
    slide_stride: tuple[int, int] = (768, 768)
    # the release's switches (protoseg.data.openseg): train augmentation, normalisation, test resize
    augmentation: str = "mmseg"  # mmseg | openseg
    normalisation: str = "mmseg"  # mmseg (RGB, 0-255 mean/std) | openseg (BGR, ImageNet mean/std on [0, 1])
    test_resize: bool = True  # False: test at the image's own size (the release, Cityscapes 2048x1024)

    def __post_init__(self) -> None:
        if len(self.class_names) != self.num_classes or len(self.palette) != self.num_classes:
            raise ValueError(f"{self.name}: {self.num_classes} classes but "
                             f"{len(self.class_names)} names / {len(self.palette)} colours")
        if self.test_mode not in ("whole", "slide"):
            raise ValueError(f"{self.name}: test_mode must be 'whole' or 'slide', got {self.test_mode!r}")
        for key in ("augmentation", "normalisation"):
            if getattr(self, key) not in ("mmseg", "openseg"):
                raise ValueError(f"{self.name}: {key} must be 'mmseg' or 'openseg', got {getattr(self, key)!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _palette_from_rows(rows, r: str, g: str, b: str) -> tuple[tuple[int, int, int], ...]:
    return tuple((int(x[r]), int(x[g]), int(x[b])) for x in rows)


def generated_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """A fixed display palette for class lists that have none (ADE20K-Full)."""
    import numpy as np

    rng = np.random.default_rng(847)
    return tuple(tuple(int(v) for v in c) for c in rng.integers(0, 256, size=(n, 3)))


def _base_spec(name: str) -> DatasetSpec:
    if name == "ade20k":
        rows = read_table("ade20k_150.tsv")
        return DatasetSpec(name=name, num_classes=150, class_names=tuple(r["name"] for r in rows),
                           palette=_palette_from_rows(rows, "palette_r", "palette_g", "palette_b"),
                           ignore_index=255)
    if name == "ade20k-full":
        rows = read_table("ade20k_full_847.tsv")
        return DatasetSpec(name=name, num_classes=847, class_names=tuple(r["name"] for r in rows),
                           palette=generated_palette(847), ignore_index=WIDE_IGNORE_INDEX)
    if name == "cityscapes":
        rows = read_table("cityscapes_19.tsv")
        return DatasetSpec(name=name, num_classes=19, class_names=tuple(r["name"] for r in rows),
                           palette=_palette_from_rows(rows, "color_r", "color_g", "color_b"),
                           ignore_index=255, base_scale=(2048, 1024), crop_size=(512, 1024),
                           test_scale=(2048, 1024), test_mode="slide")
    if name in ("coco-stuff-10k", "coco-stuff-164k"):
        rows = read_table("coco_stuff_171.tsv")
        return DatasetSpec(name=name, num_classes=171, class_names=tuple(r["name"] for r in rows),
                           palette=_palette_from_rows(rows, "palette_r", "palette_g", "palette_b"),
                           ignore_index=255, eval_split="test" if name.endswith("10k") else "val")
    raise DataError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")


def _mini(spec: DatasetSpec) -> DatasetSpec:
    """Sizes for the miniature twins (images of about 128-256 px): everything divided by 4."""
    if spec.name == "cityscapes":
        return dataclasses.replace(spec, base_scale=(512, 256), crop_size=(128, 256),
                                   test_scale=(512, 256), slide_crop=(128, 128), slide_stride=(96, 96))
    return dataclasses.replace(spec, base_scale=(512, 128), crop_size=(128, 128), test_scale=(512, 128))


def get_spec(name: str, *, top_n: int | None = None, mini: bool = False,
             root: str | Path | None = None) -> DatasetSpec:
    """The spec of ``name``; for ADE20K-Full, ``top_n`` picks a top-N label set.

    Top-N sets other than 847 depend on the frequency ranking measured during preparation, so they
    need ``root`` (a prepared ADE20K-Full root): class names come from its ``meta.json``.
    """
    spec = _base_spec(name)
    if top_n is not None and top_n != spec.num_classes:
        if name != "ade20k-full":
            raise DataError(f"top_n is only defined for ade20k-full, not {name!r}")
        if top_n not in ADE_FULL_TOP_N:
            raise DataError(f"top_n must be one of {ADE_FULL_TOP_N}, got {top_n}")
        if root is None:
            raise DataError("ade20k-full top-N classes come from the prepared root: pass root=")
        meta_path = Path(root) / "meta.json"
        if not meta_path.is_file():
            raise DataError(f"{meta_path}: missing; prepare the root first")
        label_set = json.loads(meta_path.read_text())["label_sets"].get(str(top_n))
        if label_set is None:
            raise DataError(f"{meta_path}: no label set for top-{top_n}")
        ids = label_set["full_train_ids"]
        spec = dataclasses.replace(spec, num_classes=top_n, label_dir=label_set["dir"],
                                   class_names=tuple(spec.class_names[i] for i in ids),
                                   palette=tuple(spec.palette[i] for i in ids))
    return _mini(spec) if mini else spec
