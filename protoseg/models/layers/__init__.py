"""Small reusable blocks shared by backbones and decoders (timm style: layers apart from models)."""
from .conv import ConvBNReLU
from .resize import crop_to, pad_to_multiple, resize

__all__ = ["ConvBNReLU", "crop_to", "pad_to_multiple", "resize"]
