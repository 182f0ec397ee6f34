"""Segmentation heads with one interface: ``head(features [B, D, h, w], labels=None) -> HeadOutput``.

- ``PrototypeHead``: the paper's nonparametric head (paper or official variant via ``MethodConfig``).
- ``SoftmaxHead``, ``PixelQueryHead``, ``LearnablePrototypeHead``: the parametric baselines.
- ``segmentation_loss``: the loss terms of a ``HeadOutput`` and their Eq. 13 total.
"""
from .output import HeadOutput, segmentation_loss
from .parametric import LearnablePrototypeHead, PixelQueryHead, SoftmaxHead
from .prototype import ProjectionHead, PrototypeHead

__all__ = ["HeadOutput", "LearnablePrototypeHead", "PixelQueryHead", "ProjectionHead", "PrototypeHead",
           "SoftmaxHead", "segmentation_loss"]
