"""The ``data`` section of a run config: which prepared dataset, its sizes and the loaders."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "ade20k"  # a name of protoseg.data.specs.DATASETS
    root: str = ""  # the prepared root (``protoseg prepare``)
    mini: bool = False  # sizes of the miniature twins
    top_n: int | None = None  # ade20k-full label set
    crop_size: list[int] | None = None  # [h, w]; None: the recipe's
    base_scale: list[int] | None = None  # [long, short]
    ratio_range: list[float] | None = None
    test_scale: list[int] | None = None  # [long, short]
    test_mode: str | None = None  # whole | slide; None: the dataset's
    photometric: bool = True
    train_split: str | None = None
    eval_split: str | None = None
    num_workers: int = 2
    cache_decoded: bool = False  # keep decoded training images in memory after the first epoch (small data)
    eval_batch_size: int = 1
    # the official release's recipe switches (docs/fidelity.md); None: the dataset's (MMSegmentation)
    augmentation: str | None = None  # mmseg | openseg
    normalisation: str | None = None  # mmseg | openseg
    test_resize: bool | None = None  # False: test at the image's own size
    class_weight: list[float] | None = None  # per-class CE weights (the release's FSCELoss ce_weight)
    # per-class CE weights from the training split's label frequencies, (f_c / mean f) ** -power
    # (protoseg.data.class_frequency); exclusive with class_weight. The mini scale's long-tailed twins.
    class_weight_power: float | None = None

