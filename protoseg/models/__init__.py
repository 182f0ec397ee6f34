"""Segmentation models: backbones (timm, transformers) -> decoders -> heads (``protoseg.heads``).

- ``ModelConfig`` and ``build_model``: a config in, an ``nn.Module`` out.
- ``SegmentationModel`` / ``SegmentationOutput``: the assembled model and what it returns.
- ``count_parameters`` / ``parameter_breakdown``: learnable counts as the paper's ``# Param``.
- ``paper``: the model config of every reproduced row of the paper's tables.
- subpackages ``backbones``, ``decoders``, ``layers``.
"""
from protoseg._compat import ensure_torchvision_importable

ensure_torchvision_importable()  # before anything imports timm or transformers

from .builder import build_decoder, build_head, build_model  # noqa: E402
from protoseg.config.model import HEADS, ModelConfig  # noqa: E402
from .params import count_parameters, parameter_breakdown  # noqa: E402
from .segmentor import SegmentationModel, SegmentationOutput  # noqa: E402

__all__ = ["HEADS", "ModelConfig", "SegmentationModel", "SegmentationOutput", "build_decoder", "build_head",
           "build_model", "count_parameters", "parameter_breakdown"]
