"""Backbones by name. Each builder spells out its variant; ``BACKBONES`` maps names to builders.

Every backbone returns four feature maps (``Backbone.out_channels``, ``Backbone.strides``).
"""
from __future__ import annotations

from typing import Callable

from protoseg.config.model import BACKBONE_NAMES, backbone_defaults, backbone_family

from .base import Backbone
from .hrnet import HRNetV2
from .micro import MicroHRNet, MicroMiT, MicroResNet, MicroSwin
from .mit import MIT_DEPTHS, MiT, mit_config
from .resnet import ResNetV1c
from .swin import Swin
from .weights import load_backbone_file, read_backbone_file


def build_backbone(name: str, *, pretrained: str | None = None, window_size: int | None = None,
                   drop_path_rate: float | None = None, img_size: int = 512) -> Backbone:
    """The backbone called ``name`` (a key of ``BACKBONES``).

    ``window_size`` applies to Swin only, ``drop_path_rate`` to Swin and MiT (defaults:
    ``protoseg.config.model.backbone_defaults``); giving either to a family without it is an error.
    ``pretrained`` may be a backbone file of ``protoseg convert-checkpoint`` (``weights.py``): built at
    random, then loaded strictly.
    """
    if name not in BACKBONES:
        raise ValueError(f"backbone={name!r}: expected one of {', '.join(BACKBONES)}")
    family = backbone_family(name)
    if window_size is not None and family != "swin":
        raise ValueError(f"window_size={window_size!r} applies to Swin backbones only, not backbone={name!r}")
    if drop_path_rate is not None and family not in ("swin", "mit"):
        raise ValueError(f"drop_path_rate={drop_path_rate!r} applies to Swin and MiT only, not backbone={name!r}")
    converted = read_backbone_file(pretrained) if pretrained not in (None, "hub") else None
    kwargs: dict = {"pretrained": None if converted is not None else pretrained,
                    **backbone_defaults(name)}
    if window_size is not None:
        kwargs["window_size"] = window_size
    if drop_path_rate is not None:
        kwargs["drop_path_rate"] = drop_path_rate
    if family == "swin" and name != "swin_micro":
        kwargs["img_size"] = img_size
    backbone = BACKBONES[name](**kwargs)
    if converted is not None:
        load_backbone_file(backbone, name, converted, pretrained)
    return backbone


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
    "resnet_micro": MicroResNet,
    "hrnet_micro": MicroHRNet,
    "swin_micro": MicroSwin,
    "mit_micro": MicroMiT,
}
if tuple(BACKBONES) != BACKBONE_NAMES:  # the names live in protoseg/config/model.py (torch-free validation)
    raise ImportError(f"BACKBONES {tuple(BACKBONES)} differ from protoseg.config.model.BACKBONE_NAMES")

__all__ = ["BACKBONES", "Backbone", "HRNetV2", "MiT", "MicroHRNet", "MicroMiT", "MicroResNet", "MicroSwin",
           "ResNetV1c", "Swin", "backbone_family",
           "build_backbone", "mit_config"]
