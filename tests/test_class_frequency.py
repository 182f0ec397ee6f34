"""Class weights from the training split's label frequencies (``data.class_weight_power``)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from protoseg.config import ConfigError, RunConfig
from protoseg.data.class_frequency import frequency_class_weights, label_pixel_counts
from protoseg.data.dataset import SegmentationDataset
from protoseg.data.image_io import read_label_png


def test_weights_are_the_inverse_frequency_power_normalised_to_mean_one() -> None:
    counts = torch.tensor([300, 100, 0, 100])
    w = frequency_class_weights(counts, 0.5)
    # shares 0.6, 0.2, 0.2 of mean 0.2667: (2.25, 0.75, 0.75) ** -0.5 = (0.6667, 1.1547, 1.1547), mean 0.9920
    assert w.tolist() == pytest.approx([0.67202, 1.16398, 1.0, 1.16398], abs=1e-5)
    assert w.dtype == torch.float32
    assert w[[0, 1, 3]].mean().item() == pytest.approx(1.0)
    assert frequency_class_weights(counts, 0.0).tolist() == [1.0, 1.0, 1.0, 1.0]  # plain cross-entropy
    assert frequency_class_weights(torch.zeros(3, dtype=torch.long), 0.5).tolist() == [1.0, 1.0, 1.0]


def test_counts_are_the_labelled_pixels_of_the_split(root) -> None:
    ds = SegmentationDataset(root, "train", pipeline=None)
    counts = label_pixel_counts(ds)
    expected = np.zeros(ds.num_classes, dtype=np.int64)
    for stem in ds.stems:
        label = read_label_png(root / ds.label_dir / "train" / f"{stem}.png").astype(np.int64)
        expected += np.bincount(label[label != ds.ignore_index], minlength=ds.num_classes)
    assert counts.tolist() == expected.tolist()
    assert counts.sum() > 0 and counts.shape == (ds.num_classes,)
    cached = SegmentationDataset(root, "train", pipeline=None)
    cached.cache_decoded = True  # counted through the cache, which then holds every item for training
    assert label_pixel_counts(cached).tolist() == expected.tolist() and len(cached._decoded) == len(cached)


def test_class_weight_power_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"data.class_weight_power=-0.5: expected a number >= 0"):
        RunConfig.from_dict({"data": {"dataset": "cityscapes", "class_weight_power": -0.5}})
    with pytest.raises(ConfigError, match=r"data.class_weight_power=0.5: expected null when data.class_weight"):
        RunConfig.from_dict({"data": {"dataset": "cityscapes", "class_weight_power": 0.5,
                                      "class_weight": [1.0] * 19}})


def test_the_mini_recipe_weighs_its_runs_and_not_its_pretraining(plan) -> None:
    from protoseg.pipeline.experiments import pretrain_config

    for run in plan.runs.values():
        data = run.config["data"]
        official = {plan.entries[e].recipe == "official" for e in run.entries}
        assert len(official) == 1, run.entries
        # the release's recipe: its own list (or, flipped back, plain cross-entropy); the scale's otherwise
        assert data.get("class_weight_power") == (None if official.pop() else 0.5), run.entries
    pre = pretrain_config(plan.scale_config, "resnet_micro")
    assert pre["data"]["class_weight_power"] is None
