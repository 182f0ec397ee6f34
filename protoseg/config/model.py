"""``ModelConfig``: every choice that defines a model, read in one place (``build_model``).

``None`` fields take the construction that matches the paper for the chosen backbone;
``ModelConfig.resolved()`` fills them in, so a run can record the exact model it built.
Pure Python (no torch): the names of the backbones, decoders and heads and the backbone defaults
live here, and ``protoseg.models`` maps the same names to builders.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .method import VARIANT_ALIGN_CORNERS, VARIANTS, MethodConfig

HEADS: tuple[str, ...] = ("softmax", "pixel_query", "learnable_prototypes", "prototype")
PROTOTYPE_HEADS: tuple[str, ...] = ("learnable_prototypes", "prototype")  # the heads with K per class
DECODER_NAMES: tuple[str, ...] = ("fcn", "hrnet", "mlp", "upernet")
MIT_VARIANTS: tuple[str, ...] = ("b0", "b1", "b2", "b3", "b4", "b5")
# every backbone name; protoseg.models.backbones.BACKBONES maps each to its builder
MICRO_BACKBONES: tuple[str, ...] = ("resnet_micro", "hrnet_micro", "swin_micro", "mit_micro")  # mini scale
BACKBONE_NAMES: tuple[str, ...] = ("resnet18", "resnet50", "resnet101", "hrnet_w18_small", "hrnet_w18",
                                   "hrnet_w48", "swin_tiny", "swin_base",
                                   *(f"mit_{v}" for v in MIT_VARIANTS), *MICRO_BACKBONES)
# per family: the defaults of the family-only options (ModelConfig.resolved and build_backbone)
BACKBONE_DEFAULTS: dict[str, dict[str, Any]] = {"swin": {"window_size": 7, "drop_path_rate": 0.3},
                                                "mit": {"drop_path_rate": 0.1}}
# per micro backbone: its own defaults (a 32-px image: window 4; no stochastic depth at one block a stage)
MICRO_DEFAULTS: dict[str, dict[str, Any]] = {"swin_micro": {"window_size": 4, "drop_path_rate": 0.0},
                                             "mit_micro": {"drop_path_rate": 0.0}}


def backbone_defaults(name: str) -> dict[str, Any]:
    """The defaults of the family-only options of backbone ``name``."""
    return MICRO_DEFAULTS.get(name, BACKBONE_DEFAULTS.get(backbone_family(name), {}))

# backbone family -> decoder that reproduces the paper's row (Swin: see docs/models.md, the 90.6M finding)
DEFAULT_DECODER: dict[str, str] = {"resnet": "fcn", "hrnet": "hrnet", "swin": "mlp", "mit": "mlp"}
SMALL_BACKBONES: frozenset[str] = frozenset({"resnet18", "hrnet_w18_small", "mit_b0", "mit_b1"})


@dataclass(frozen=True)
class ModelConfig:
    """A segmentation model: backbone -> decoder -> head (+ auxiliary FCN head in training).

    Attributes:
        backbone: a key of ``protoseg.models.backbones.BACKBONES`` (``resnet101``, ``hrnet_w48``,
            ``swin_base``, ``mit_b0`` .. ``mit_b5``, and the small ``resnet18``, ``hrnet_w18_small``,
            ``swin_tiny``).
        num_classes: C.
        head: ``softmax`` (Eq. 1), ``pixel_query`` (Eq. 2), ``learnable_prototypes`` (K learnable per
            class) or ``prototype`` (the paper's nonparametric head).
        decoder: ``fcn`` | ``hrnet`` | ``mlp`` | ``upernet``; ``None``: the paper's (ResNet fcn, HRNet
            hrnet, Swin and MiT mlp).
        decoder_channels: D; ``None``: fcn 512 (128 on ResNet-18 and HRNet-W18-small), hrnet sum of branches (720 for W48),
            mlp 768 (256 on MiT-B0/B1 and HRNet-W18-small), upernet 512.
        decoder_kernel_size: the hrnet decoder's conv; ``None``: 1 (MMSeg's ``fcn_hr48``, 65.9M); the
            official ProtoSeg release uses 3 (and dropout 0.1). Other decoders have fixed kernels.
        dropout: dropout before the head (Dropout2d); HRNet's concat head has none in MMSeg, so
            ``None`` means 0.1 except 0.0 for the hrnet decoder.
        aux_head: auxiliary FCN head on stage 3 with its own softmax classifier, training only;
            ``None``: on for the fcn and upernet decoders (MMSeg), off otherwise.
        aux_channels: its width; ``None``: 256 (64 on ResNet-18 and HRNet-W18-small).
        aux_loss_weight: its loss weight (0.4), read by the training engine.
        num_prototypes: K for ``learnable_prototypes`` and ``prototype`` (its only home).
        method_variant: ``paper`` or ``official`` preset of the prototype head (``MethodConfig``).
        method: the prototype head's full ``MethodConfig`` instead of the preset; from a mapping, its
            keys override the preset of ``method_variant``.
        pretrained: ``None`` random init; ``"hub"`` ImageNet weights through timm / transformers
            (needs network); otherwise a local checkpoint path.
        window_size: Swin only; ``None``: 7 (see docs/models.md: 12 adds 0.14M of position tables).
        drop_path_rate: Swin (default 0.3) and MiT (default 0.1) only.
        align_corners: bilinear upsampling mode inside decoders, for predictions and (read by the
            engine) for the losses; ``None``: True for the prototype head's official variant (as the
            release), else False (MMSeg).
    """

    backbone: str = "mit_b2"
    num_classes: int = 150
    head: str = "softmax"
    decoder: str | None = None
    decoder_channels: int | None = None
    decoder_kernel_size: int | None = None
    dropout: float | None = None
    aux_head: bool | None = None
    aux_channels: int | None = None
    aux_loss_weight: float = 0.4
    num_prototypes: int = 10
    method_variant: str = "paper"
    method: MethodConfig | None = None
    pretrained: str | None = None
    window_size: int | None = None
    drop_path_rate: float | None = None
    align_corners: bool | None = None

    def __post_init__(self) -> None:
        _choice("backbone", self.backbone, BACKBONE_NAMES)
        _choice("head", self.head, HEADS)
        if self.decoder is not None:
            _choice("decoder", self.decoder, DECODER_NAMES)
        _choice("method_variant", self.method_variant, tuple(VARIANTS))
        _positive("num_classes", self.num_classes)
        _positive("num_prototypes", self.num_prototypes)
        for key in ("decoder_channels", "decoder_kernel_size", "aux_channels", "window_size"):
            if getattr(self, key) is not None:
                _positive(key, getattr(self, key))
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout={self.dropout!r}: expected a value in [0, 1)")
        if self.aux_loss_weight < 0:
            raise ValueError(f"ModelConfig.aux_loss_weight={self.aux_loss_weight!r}: expected >= 0")
        if self.decoder_kernel_size is not None and self.decoder_kernel_size % 2 == 0:
            raise ValueError(f"ModelConfig.decoder_kernel_size={self.decoder_kernel_size!r}: expected an odd size")
        if self.method is not None:
            if not isinstance(self.method, MethodConfig):
                raise TypeError(f"ModelConfig.method: expected a MethodConfig, got {type(self.method).__name__}")

    @property
    def family(self) -> str:
        return backbone_family(self.backbone)

    def resolved(self) -> "ModelConfig":
        """This config with every ``None`` default replaced by the construction it stands for
        (``decoder_channels`` of the hrnet decoder stays ``None``: the backbone's branch sum)."""
        family = self.family
        defaults = backbone_defaults(self.backbone)
        decoder = self.decoder or DEFAULT_DECODER[family]
        small = self.backbone in SMALL_BACKBONES
        channels = self.decoder_channels
        if channels is None and decoder != "hrnet":
            channels = {"fcn": 128 if small else 512, "mlp": 256 if small else 768, "upernet": 512}[decoder]
        aux = self.aux_head if self.aux_head is not None else decoder in ("fcn", "upernet")
        method = self.method
        if self.head == "prototype" and method is None:
            method = MethodConfig.for_variant(self.method_variant)
        return dataclasses.replace(
            self, decoder=decoder, decoder_channels=channels,
            decoder_kernel_size=(self.decoder_kernel_size or 1) if decoder == "hrnet" else self.decoder_kernel_size,
            dropout=self.dropout if self.dropout is not None else (0.0 if decoder == "hrnet" else 0.1),
            aux_head=aux, aux_channels=(self.aux_channels or (64 if small else 256)) if aux else self.aux_channels,
            method=method,
            align_corners=(self.align_corners if self.align_corners is not None
                           else self.head == "prototype" and VARIANT_ALIGN_CORNERS[self.method_variant]),
            window_size=(self.window_size or defaults["window_size"]) if family == "swin" else self.window_size,
            drop_path_rate=(self.drop_path_rate if self.drop_path_rate is not None
                            else defaults.get("drop_path_rate")),
        )

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["method"] = self.method.to_dict() if self.method is not None else None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """From a plain mapping (YAML); unknown keys are an error naming them; ``method`` may be a dict
        of overrides of the preset that ``method_variant`` picks."""
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - valid)
        if unknown:
            raise ValueError(f"unknown ModelConfig key(s) {unknown}; valid keys: {', '.join(sorted(valid))}")
        data = dict(data)
        method = data.get("method")
        if isinstance(method, dict):
            data["method"] = MethodConfig.for_variant(data.get("method_variant", "paper"), **method)
        return cls(**data)


def backbone_family(name: str) -> str:
    """``"resnet"``, ``"hrnet"``, ``"swin"`` or ``"mit"``."""
    return name.split("_")[0].rstrip("0123456789")


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"ModelConfig.{key}={value!r}: expected one of {', '.join(allowed)}")


def _positive(key: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"ModelConfig.{key}={value!r}: expected an integer >= 1")
