"""Decoders: backbone feature maps in, the D-channel map before the classifier out (``out_channels``).

- ``FCNDecoder``: FCN on one map (ResNet main head; the auxiliary head on stage 3).
- ``HRNetConcatDecoder``: HRNetV2's upsample-and-concatenate head.
- ``MLPDecoder``: SegFormer's all-MLP decoder.
- ``UperNetDecoder``: PPM + FPN.
"""
from .fcn import FCNDecoder
from .hrnet import HRNetConcatDecoder
from .mlp import MLPDecoder
from .upernet import PyramidPooling, UperNetDecoder

DECODERS = ("fcn", "hrnet", "mlp", "upernet")

__all__ = ["DECODERS", "FCNDecoder", "HRNetConcatDecoder", "MLPDecoder", "PyramidPooling", "UperNetDecoder"]
