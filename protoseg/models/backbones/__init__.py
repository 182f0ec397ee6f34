"""Backbones by name. Each builder spells out its variant; ``BACKBONES`` maps names to builders.

Every backbone returns four feature maps (``Backbone.out_channels``, ``Backbone.strides``).
A builder imports its family's module when called, so that a process pays for timm (~0.5 s of CPU)
or transformers (~0.9 s) only if it builds a backbone that needs them (a mini run: one family).
The full-size classes stay importable from here (``__getattr__``).
"""
from __future__ import annotations

import importlib
from typing import Callable

from protoseg.config.model import BACKBONE_NAMES, MIT_VARIANTS, backbone_defaults, backbone_family

from .base import Backbone
from .micro import MicroHRNet, MicroMiT, MicroResNet, MicroSwin
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


# full-size names importable from here -> their module, imported on first use (PEP 562 __getattr__):
# timm loads with resnet/hrnet/swin, transformers with mit
_LAZY: dict[str, str] = {"ResNetV1c": "resnet", "HRNetV2": "hrnet", "Swin": "swin", "MiT": "mit",
                         "MIT_DEPTHS": "mit", "mit_config": "mit"}


def __getattr__(name: str):
    """The full-size backbone classes and MiT's tables, imported on first use."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)


def _lazy(cls: str, **fixed) -> Callable[..., Backbone]:
    """A builder of full-size class ``cls`` (a key of ``_LAZY``) with ``fixed`` arguments."""
    return lambda **kw: __getattr__(cls)(**fixed, **kw)


BACKBONES: dict[str, Callable[..., Backbone]] = {
    "resnet18": _lazy("ResNetV1c", depth=18),
    "resnet50": _lazy("ResNetV1c", depth=50),
    "resnet101": _lazy("ResNetV1c", depth=101),
    "hrnet_w18_small": _lazy("HRNetV2", arch="hrnet_w18_small"),
    "hrnet_w18": _lazy("HRNetV2", arch="hrnet_w18"),
    "hrnet_w48": _lazy("HRNetV2", arch="hrnet_w48"),
    "swin_tiny": _lazy("Swin", size="tiny"),
    "swin_base": _lazy("Swin", size="base"),
    **{f"mit_{v}": _lazy("MiT", variant=v) for v in MIT_VARIANTS},
    "resnet_micro": MicroResNet,  # micro.py imports timm / transformers inside the constructors
    "hrnet_micro": MicroHRNet,
    "swin_micro": MicroSwin,
    "mit_micro": MicroMiT,
}
if tuple(BACKBONES) != BACKBONE_NAMES:  # the names live in protoseg/config/model.py (torch-free validation)
    raise ImportError(f"BACKBONES {tuple(BACKBONES)} differ from protoseg.config.model.BACKBONE_NAMES")

__all__ = ["BACKBONES", "MIT_DEPTHS", "Backbone", "HRNetV2", "MiT", "MicroHRNet", "MicroMiT", "MicroResNet",
           "MicroSwin", "ResNetV1c", "Swin", "backbone_family", "build_backbone", "mit_config"]
