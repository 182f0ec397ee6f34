"""Segmentation models: backbones (timm, transformers) -> decoders -> heads (``protoseg.heads``).

- ``ModelConfig`` and ``build_model``: a config in, an ``nn.Module`` out.
- ``SegmentationModel`` / ``SegmentationOutput``: the assembled model and what it returns.
- ``count_parameters`` / ``parameter_breakdown``: learnable counts as the paper's ``# Param``.
- ``paper``: the model config of every reproduced row of the paper's tables.
- subpackages ``backbones``, ``decoders``, ``layers``.
"""
# timm and transformers are imported by the backbone that needs them, each import site after
# protoseg._compat.ensure_torchvision_importable(): a run pays only for its own family's library
from .builder import build_decoder, build_head, build_model
from protoseg.config.model import HEADS, ModelConfig
from .params import count_parameters, parameter_breakdown
from .segmentor import SegmentationModel, SegmentationOutput

__all__ = ["HEADS", "ModelConfig", "SegmentationModel", "SegmentationOutput", "build_decoder", "build_head",
           "build_model", "count_parameters", "parameter_breakdown"]
