"""Segmentation heads with one interface: ``head(features [B, D, h, w], labels=None) -> HeadOutput``.

- ``PrototypeHead``: the paper's nonparametric head (paper or official variant via ``MethodConfig``).
- ``SoftmaxHead``, ``PixelQueryHead``, ``LearnablePrototypeHead``: the parametric baselines.
- ``segmentation_loss``: Eq. 13 from a ``HeadOutput``.
"""
from .output import HeadOutput, segmentation_loss
from .parametric import LearnablePrototypeHead, PixelQueryHead, SoftmaxHead
from .prototype import ProjectionHead, PrototypeHead

__all__ = ["HeadOutput", "LearnablePrototypeHead", "PixelQueryHead", "ProjectionHead", "PrototypeHead",
           "SoftmaxHead", "segmentation_loss"]
