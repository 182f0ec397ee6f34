"""Which data pipelines a dataset spec asks for: the recipe's (MMSegmentation) or the release's."""
from __future__ import annotations

from .openseg import NativeTestPipeline, OpensegTrainPipeline
from .transforms import TestPipeline, TrainPipeline


def pipelines_from_spec(spec, *, train: bool):
    """The spec's pipelines: ``spec.augmentation`` mmseg (``protoseg.data.transforms``) or openseg
    (the release's, ``protoseg.data.openseg``); ``spec.normalisation`` likewise;
    ``spec.test_resize=False`` tests at the image's own size (the release)."""
    augmentation = getattr(spec, "augmentation", "mmseg")
    normalisation = getattr(spec, "normalisation", "mmseg")
    if train and augmentation == "openseg":
        return OpensegTrainPipeline(crop_size=spec.crop_size, ignore_index=spec.ignore_index,
                                    normalisation=normalisation)
    if train:
        return TrainPipeline(crop_size=spec.crop_size, base_scale=spec.base_scale,
                             ignore_index=spec.ignore_index, ratio_range=spec.ratio_range,
                             cat_max_ratio=spec.cat_max_ratio, normalisation=normalisation)
    if not getattr(spec, "test_resize", True):
        return NativeTestPipeline(normalisation=normalisation)
    return TestPipeline(test_scale=spec.test_scale, normalisation=normalisation)
