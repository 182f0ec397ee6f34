"""Parametric baselines: every class is a learnable prototype (or K of them).

- ``SoftmaxHead``: Eq. 1, a 1x1 convolution (D x C weights + C biases).
- ``PixelQueryHead``: Eq. 2, C learnable queries compared by cosine with l2-normalised pixels.
- ``LearnablePrototypeHead``: K learnable prototypes per class, class score = max over its K
  (Table 4's parametric rows; D x C x K parameters).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .output import HeadOutput


class SoftmaxHead(nn.Module):
    """Parametric softmax projection (Eq. 1)."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.classifier = nn.Conv2d(in_channels, num_classes, kernel_size=1)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, features: Tensor, labels: Tensor | None = None) -> HeadOutput:
        """``[B, D, h, w] -> logits [B, C, h, w]``."""
        return HeadOutput(logits=self.classifier(features))


class PixelQueryHead(nn.Module):
    """Parametric pixel-query (Eq. 2): cosine of l2-normalised pixels and learnable queries.

    Cosines lie in [-1, 1]; ``temperature`` divides them so that the softmax can become confident.
    """

    def __init__(self, in_channels: int, num_classes: int, temperature: float = 0.1) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.temperature = temperature
        self.queries = nn.Parameter(torch.randn(num_classes, in_channels) * 0.02)

    def forward(self, features: Tensor, labels: Tensor | None = None) -> HeadOutput:
        pixels = F.normalize(features, dim=1)
        queries = F.normalize(self.queries, dim=1)
        return HeadOutput(logits=torch.einsum("bdhw,cd->bchw", pixels, queries) / self.temperature)


class LearnablePrototypeHead(nn.Module):
    """K learnable prototypes per class; a class scores its best prototype's dot product."""

    def __init__(self, in_channels: int, num_classes: int, num_prototypes: int = 10) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_prototypes = num_prototypes
        self.prototypes = nn.Parameter(torch.randn(num_classes, num_prototypes, in_channels) * 0.01)

    def forward(self, features: Tensor, labels: Tensor | None = None) -> HeadOutput:
        b, d, h, w = features.shape
        pixels = features.permute(0, 2, 3, 1).reshape(-1, d)
        # [N, C*K] products, max over each class's K contiguous columns (faster than amax over a strided
        # K axis, bit for bit the same values and gradients)
        sim = pixels @ self.prototypes.reshape(-1, d).t()
        logits = sim.view(-1, self.num_classes, self.num_prototypes).amax(dim=-1)
        return HeadOutput(logits=logits.view(b, h, w, self.num_classes).permute(0, 3, 1, 2).contiguous())
