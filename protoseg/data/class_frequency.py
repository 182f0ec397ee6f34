"""Per-class cross-entropy weights from a training split's label frequencies.

``data.class_weight_power: p`` weighs class c by ``(f_c / mean f) ** -p``, f_c its share of the
labelled training pixels: p = 0 is plain cross-entropy, p = 0.5 the inverse square root of the
frequency. The mini scale uses it because its twins are long-tailed (power-law class frequencies) and
its schedules are short: the rare classes would otherwise stay unlearned. Counted here, by hand,
because the count is one ``bincount`` per label map and no segmentation library computes weights from
a prepared split.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def label_pixel_counts(dataset) -> Tensor:
    """``[C]`` labelled pixels per class over every item of ``dataset`` (a ``SegmentationDataset``);
    the ignore value and any value outside ``[0, C)`` are not counted. A dataset that caches decoded
    items is read through its cache (training reads every item anyway: each is decoded once); any
    other reads its labels alone."""
    counts = np.zeros(dataset.num_classes, dtype=np.int64)
    for i in range(len(dataset)):
        label = dataset.decoded(i)[1] if dataset.cache_decoded else dataset.label(i)
        label = label[(label >= 0) & (label < dataset.num_classes)]
        counts += np.bincount(label.ravel(), minlength=dataset.num_classes)
    return torch.from_numpy(counts)


def frequency_class_weights(counts: Tensor, power: float) -> Tensor:
    """``[C]`` pixel counts -> ``[C]`` float32 weights ``(f_c / mean f) ** -power``, normalised to mean
    1 over the classes that occur; a class with no pixel gets 1 (it is never a target)."""
    counts = counts.double()
    present = counts > 0
    weights = torch.ones_like(counts)
    if present.any():
        freq = counts[present] / counts[present].sum()
        w = (freq / freq.mean()).pow(-float(power))
        weights[present] = w / w.mean()
    return weights.float()
