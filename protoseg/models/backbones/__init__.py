"""Backbones by name. Each builder spells out its variant; ``BACKBONES`` maps names to builders.

Every backbone returns four feature maps (``Backbone.out_channels``, ``Backbone.strides``).
"""
from __future__ import annotations

from typing import Callable

from .base import Backbone
from .hrnet import HRNetV2
from .mit import MIT_DEPTHS, MiT, mit_config
from .resnet import ResNetV1c
from .swin import Swin
from .weights import load_backbone_file, read_backbone_file


def build_backbone(name: str, *, pretrained: str | None = None, window_size: int | None = None,
                   drop_path_rate: float | None = None, img_size: int = 512) -> Backbone:
    """The backbone called ``name`` (a key of ``BACKBONES``).

    ``window_size`` applies to Swin only (default 7), ``drop_path_rate`` to Swin (default 0.3) and MiT
    (default 0.1); giving either to a family without it is an error. ``pretrained`` may be a backbone
    file of ``protoseg convert-checkpoint`` (``weights.py``): built at random, then loaded strictly.
    """
    if name not in BACKBONES:
        raise ValueError(f"backbone={name!r}: expected one of {', '.join(BACKBONES)}")
    family = backbone_family(name)
    if window_size is not None and family != "swin":
        raise ValueError(f"window_size={window_size!r} applies to Swin backbones only, not backbone={name!r}")
    if drop_path_rate is not None and family not in ("swin", "mit"):
        raise ValueError(f"drop_path_rate={drop_path_rate!r} applies to Swin and MiT only, not backbone={name!r}")
    converted = read_backbone_file(pretrained) if pretrained not in (None, "hub") else None
    kwargs: dict = {"pretrained": None if converted is not None else pretrained}
    if family == "swin":
        kwargs.update(window_size=7 if window_size is None else window_size, img_size=img_size,
                      drop_path_rate=0.3 if drop_path_rate is None else drop_path_rate)
    elif family == "mit":
        kwargs.update(drop_path_rate=0.1 if drop_path_rate is None else drop_path_rate)
    backbone = BACKBONES[name](**kwargs)
    if converted is not None:
        load_backbone_file(backbone, name, converted, pretrained)
    return backbone


def backbone_family(name: str) -> str:
    """``"resnet"``, ``"hrnet"``, ``"swin"`` or ``"mit"``."""
    return name.split("_")[0].rstrip("0123456789")


BACKBONES: dict[str, Callable[..., Backbone]] = {
    "resnet18": lambda **kw: ResNetV1c(depth=18, **kw),
    "resnet50": lambda **kw: ResNetV1c(depth=50, **kw),
    "resnet101": lambda **kw: ResNetV1c(depth=101, **kw),
    "hrnet_w18_small": lambda **kw: HRNetV2(arch="hrnet_w18_small", **kw),
    "hrnet_w18": lambda **kw: HRNetV2(arch="hrnet_w18", **kw),
    "hrnet_w48": lambda **kw: HRNetV2(arch="hrnet_w48", **kw),
    "swin_tiny": lambda **kw: Swin(size="tiny", **kw),
    "swin_base": lambda **kw: Swin(size="base", **kw),
    **{f"mit_{v}": (lambda v: lambda **kw: MiT(variant=v, **kw))(v) for v in MIT_DEPTHS},
}

__all__ = ["BACKBONES", "Backbone", "HRNetV2", "MiT", "ResNetV1c", "Swin", "backbone_family",
           "build_backbone", "mit_config"]
