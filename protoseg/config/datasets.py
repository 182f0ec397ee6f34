"""Dataset facts that configs need without the data package: the label ignore values.

The prepared labels mark unlabelled pixels with 255 (8-bit PNGs), except ADE20K-Full, whose 847
classes need 16-bit labels and use 65535 (docs/data.md). ``protoseg.data`` (specs, the ADE20K-Full
format and its top-N ranking) and the run config (checks of moved keys) read the values here; the
losses and the prototype head take the value of the run's dataset.
"""
from __future__ import annotations

IGNORE_INDEX = 255  # unlabelled pixels of 8-bit labels
WIDE_IGNORE_INDEX = 65535  # unlabelled pixels of 16-bit labels (ADE20K-Full)
DATASET_IGNORE_INDEX: dict[str, int] = {"ade20k-full": WIDE_IGNORE_INDEX}  # datasets not at 255
# evaluated classes of each dataset (ADE20K-Full: all 847; its top-N subsets have N)
DATASET_CLASSES: dict[str, int] = {"ade20k": 150, "ade20k-full": 847, "cityscapes": 19,
                                   "coco-stuff-10k": 171, "coco-stuff-164k": 171}


def ignore_index(dataset: str) -> int:
    """The ignore value of ``dataset``'s prepared labels."""
    return DATASET_IGNORE_INDEX.get(dataset, IGNORE_INDEX)
