"""One builder: a ``ModelConfig`` in, a ``SegmentationModel`` out, for every backbone x decoder x head."""
from __future__ import annotations

from typing import Any

from torch import nn

from protoseg.heads import LearnablePrototypeHead, PixelQueryHead, PrototypeHead, SoftmaxHead

from .aux_head import AuxiliaryHead
from .backbones import Backbone, build_backbone
from .config import ModelConfig
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


def build_decoder(cfg: ModelConfig, backbone: Backbone) -> nn.Module:
    """The decoder of a resolved config, fitted to ``backbone.out_channels``."""
    chans = backbone.out_channels
    if cfg.decoder_kernel_size is not None and cfg.decoder != "hrnet":
        raise ValueError(f"ModelConfig.decoder_kernel_size={cfg.decoder_kernel_size!r} applies to the hrnet "
                         f"decoder only, not decoder={cfg.decoder!r}")
    if cfg.decoder == "fcn":
        return FCNDecoder(in_channels=chans[-1], channels=cfg.decoder_channels, in_index=-1, num_convs=2,
                          concat_input=True, dropout=cfg.dropout)
    if cfg.decoder == "hrnet":
        return HRNetConcatDecoder(in_channels=chans, channels=cfg.decoder_channels,
                                  kernel_size=cfg.decoder_kernel_size, dropout=cfg.dropout,
                                  align_corners=cfg.align_corners)
    if cfg.decoder == "mlp":
        return MLPDecoder(in_channels=chans, channels=cfg.decoder_channels, dropout=cfg.dropout,
                          align_corners=cfg.align_corners)
    if cfg.decoder == "upernet":
        return UperNetDecoder(in_channels=chans, channels=cfg.decoder_channels, dropout=cfg.dropout,
                              align_corners=cfg.align_corners)
    raise ValueError(f"ModelConfig.decoder={cfg.decoder!r}: no builder")  # unreachable after validation


def build_head(cfg: ModelConfig, in_channels: int) -> nn.Module:
    """The head of a resolved config on ``in_channels`` (D) decoder features."""
    if cfg.head == "softmax":
        return SoftmaxHead(in_channels, cfg.num_classes)
    if cfg.head == "pixel_query":
        return PixelQueryHead(in_channels, cfg.num_classes)
    if cfg.head == "learnable_prototypes":
        return LearnablePrototypeHead(in_channels, cfg.num_classes, cfg.num_prototypes)
    if cfg.head == "prototype":
        return PrototypeHead(in_channels, cfg.num_classes, cfg.method)
    raise ValueError(f"ModelConfig.head={cfg.head!r}: no builder")  # unreachable after validation
