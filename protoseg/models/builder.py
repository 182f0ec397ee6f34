"""One builder: a ``ModelConfig`` in, a ``SegmentationModel`` out, for every backbone x decoder x head."""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from protoseg.config.model import DECODER_NAMES, HEADS, ModelConfig
from protoseg.heads import LearnablePrototypeHead, PixelQueryHead, PrototypeHead, SoftmaxHead

from .aux_head import AuxiliaryHead
from .backbones import Backbone, build_backbone
from .decoders import FCNDecoder, HRNetConcatDecoder, MLPDecoder, UperNetDecoder
from .segmentor import SegmentationModel


def build_model(config: ModelConfig | None = None, **overrides: Any) -> SegmentationModel:
    """Build the model of ``config`` (``ModelConfig()`` if omitted), with keyword ``overrides`` of its
    fields, e.g. ``build_model(backbone="hrnet_w48", head="prototype", num_classes=19)``.

    Random init unless ``config.pretrained`` names weights (``"hub"`` or a local file; only the
    backbone has ImageNet weights). The returned model keeps the resolved config as ``.config``.
    """
    if config is None:
        config = ModelConfig(**overrides)
    elif overrides:
        config = ModelConfig.from_dict({**config.to_dict(), **overrides})
    cfg = config.resolved()
    backbone = build_backbone(cfg.backbone, pretrained=cfg.pretrained, window_size=cfg.window_size,
                              drop_path_rate=cfg.drop_path_rate)
    decoder = build_decoder(cfg, backbone)
    head = build_head(cfg, decoder.out_channels)
    aux = None
    if cfg.aux_head:
        aux = AuxiliaryHead(in_channels=backbone.out_channels[2], num_classes=cfg.num_classes,
                            channels=cfg.aux_channels, in_index=2)
    return SegmentationModel(backbone=backbone, decoder=decoder, head=head, aux_head=aux,
                             aux_loss_weight=cfg.aux_loss_weight, align_corners=cfg.align_corners, config=cfg)


def _fcn(cfg: ModelConfig, chans) -> nn.Module:
    return FCNDecoder(in_channels=chans[-1], channels=cfg.decoder_channels, in_index=-1, num_convs=2,
                      concat_input=True, dropout=cfg.dropout)


def _hrnet(cfg: ModelConfig, chans) -> nn.Module:
    return HRNetConcatDecoder(in_channels=chans, channels=cfg.decoder_channels,
                              kernel_size=cfg.decoder_kernel_size, dropout=cfg.dropout,
                              align_corners=cfg.align_corners)


def _mlp(cfg: ModelConfig, chans) -> nn.Module:
    return MLPDecoder(in_channels=chans, channels=cfg.decoder_channels, dropout=cfg.dropout,
                      align_corners=cfg.align_corners)


def _upernet(cfg: ModelConfig, chans) -> nn.Module:
    return UperNetDecoder(in_channels=chans, channels=cfg.decoder_channels, dropout=cfg.dropout,
                          align_corners=cfg.align_corners)


# decoder name (protoseg.config.model.DECODER_NAMES) -> builder(resolved config, backbone channels)
DECODER_BUILDERS: dict[str, Callable[[ModelConfig, Any], nn.Module]] = {
    "fcn": _fcn, "hrnet": _hrnet, "mlp": _mlp, "upernet": _upernet}
# head name (protoseg.config.model.HEADS) -> builder(resolved config, D decoder channels)
HEAD_BUILDERS: dict[str, Callable[[ModelConfig, int], nn.Module]] = {
    "softmax": lambda cfg, d: SoftmaxHead(d, cfg.num_classes),
    "pixel_query": lambda cfg, d: PixelQueryHead(d, cfg.num_classes),
    "learnable_prototypes": lambda cfg, d: LearnablePrototypeHead(d, cfg.num_classes, cfg.num_prototypes),
    "prototype": lambda cfg, d: PrototypeHead(d, cfg.num_classes, cfg.num_prototypes, config=cfg.method),
}
if tuple(DECODER_BUILDERS) != DECODER_NAMES or tuple(HEAD_BUILDERS) != HEADS:  # the names: config/model.py
    raise ImportError("DECODER_BUILDERS/HEAD_BUILDERS differ from protoseg.config.model's names")


def build_decoder(cfg: ModelConfig, backbone: Backbone) -> nn.Module:
    """The decoder of a resolved config, fitted to ``backbone.out_channels``."""
    if cfg.decoder_kernel_size is not None and cfg.decoder != "hrnet":
        raise ValueError(f"ModelConfig.decoder_kernel_size={cfg.decoder_kernel_size!r} applies to the hrnet "
                         f"decoder only, not decoder={cfg.decoder!r}")
    return DECODER_BUILDERS[cfg.decoder](cfg, backbone.out_channels)


def build_head(cfg: ModelConfig, in_channels: int) -> nn.Module:
    """The head of a resolved config on ``in_channels`` (D) decoder features."""
    return HEAD_BUILDERS[cfg.head](cfg, in_channels)
