"""Micro backbones of the four families for the mini scale (32x32 twins on a 2-core CPU).

Each is the family's own timm / transformers construction at micro size: one block per stage, widths
16-32-64-128, and a first stage at stride 2 (not 4), because at 32 px the output stride decides what a
model can resolve (docs/mini_recipe.md). ``forward`` returns four maps at strides 2, 4, 8, 16.
timm and transformers are imported inside the constructors: a run builds one family and pays only for
the library that family needs (``protoseg.models.backbones``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from protoseg._compat import ensure_torchvision_importable

from .base import Backbone

if TYPE_CHECKING:
    from transformers import SegformerConfig

MICRO_WIDTHS = (16, 32, 64, 128)
MICRO_STRIDES = (2, 4, 8, 16)


class MicroResNet(Backbone):
    """timm ResNet with BasicBlocks [1, 1, 1, 1], widths 16-128, a 16-channel stem and no max-pool."""

    def __init__(self, *, pretrained: str | None = None) -> None:
        super().__init__()
        from .timm_utils import create_timm

        self.body = create_timm("resnet18", pretrained=pretrained, hub_tag=None, features_only=True,
                                out_indices=(1, 2, 3, 4), layers=[1, 1, 1, 1], channels=MICRO_WIDTHS,
                                stem_width=16)
        self.body.maxpool = nn.Identity()  # stride 2 instead of 4 after the stem
        self.out_channels = tuple(self.body.feature_info.channels())
        self.strides = MICRO_STRIDES

    def forward_features(self, images: Tensor) -> list[Tensor]:
        return list(self.body(images))


def _hrnet_stage(branches: int, blocks_type: str = "BASIC") -> dict:
    return dict(num_modules=1, num_branches=branches, block_type=blocks_type, num_blocks=(1,) * branches,
                num_channels=MICRO_WIDTHS[:branches], fuse_method="SUM")


# timm's HRNet configuration format (timm.models.hrnet.cfg_cls), one BASIC block per branch
HRNET_MICRO_CFG = dict(stem_width=16, stage1=dict(num_modules=1, num_branches=1, block_type="BASIC",
                                                  num_blocks=(1,), num_channels=(16,), fuse_method="SUM"),
                       stage2=_hrnet_stage(2), stage3=_hrnet_stage(3), stage4=_hrnet_stage(4))


class MicroHRNet(Backbone):
    """timm HighResolutionNet with a custom configuration (one BASIC block per branch, branches
    16-32-64-128) and a stride-2 stem (its second conv at stride 1): branches at strides 2-16."""

    size_divisor = 16

    def __init__(self, *, pretrained: str | None = None) -> None:
        super().__init__()
        if pretrained == "hub":
            raise ValueError("pretrained='hub': the micro HRNet has no ImageNet weights")
        ensure_torchvision_importable()
        from timm.models.hrnet import HighResolutionNetFeatures

        self.body = HighResolutionNetFeatures(HRNET_MICRO_CFG, feature_location="", out_indices=(1, 2, 3, 4))
        self.body.conv2.stride = (1, 1)
        self.out_channels = tuple(self.body.feature_info.channels())
        self.strides = MICRO_STRIDES

    def forward_features(self, images: Tensor) -> list[Tensor]:
        return list(self.body(images))


class MicroSwin(Backbone):
    """timm SwinTransformer with patch 2, embed 32, depths [1, 1, 1, 1], window 4, heads 1-2-4-8;
    MMSeg's norm on every output."""

    size_divisor = 16

    def __init__(self, *, img_size: int = 32, drop_path_rate: float = 0.0, window_size: int = 4,
                 pretrained: str | None = None) -> None:
        super().__init__()
        from .timm_utils import create_timm

        self.body = create_timm("swin_tiny_patch4_window7_224", pretrained=pretrained, hub_tag=None,
                                features_only=True, feature_cls="getter", out_indices=(0, 1, 2, 3),
                                img_size=img_size, patch_size=2, embed_dim=32, depths=(1, 1, 1, 1),
                                num_heads=(1, 2, 4, 8), window_size=window_size, strict_img_size=False,
                                always_partition=True, drop_path_rate=drop_path_rate)
        self.window_size = window_size
        self.out_channels = tuple(self.body.feature_info.channels())
        self.strides = MICRO_STRIDES
        self.norms = nn.ModuleList(nn.LayerNorm(c) for c in self.out_channels)

    def forward_features(self, images: Tensor) -> list[Tensor]:
        feats = self.body(images)  # NCHW
        return [norm(f.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous() for norm, f in zip(self.norms, feats)]


def mit_micro_config(*, drop_path_rate: float = 0.0) -> SegformerConfig:
    """MiT at micro size: widths 16-128, depths [1, 1, 1, 1], heads 1-1-2-4, reduction 4-2-1-1, and an
    overlapping patch embedding of stride 2 (not 4) in the first stage."""
    ensure_torchvision_importable()
    from transformers import SegformerConfig

    return SegformerConfig(depths=[1, 1, 1, 1], hidden_sizes=list(MICRO_WIDTHS), num_attention_heads=[1, 1, 2, 4],
                           sr_ratios=[4, 2, 1, 1], mlp_ratios=[4, 4, 4, 4], patch_sizes=[7, 3, 3, 3],
                           strides=[2, 2, 2, 2], drop_path_rate=drop_path_rate)


class MicroMiT(Backbone):
    """MiT encoder (``transformers.SegformerModel``) of ``mit_micro_config``."""

    def __init__(self, *, drop_path_rate: float = 0.0, pretrained: str | None = None) -> None:
        super().__init__()
        if pretrained is not None:
            raise ValueError("the micro MiT loads weights through a backbone file only (protoseg export-backbone)")
        config = mit_micro_config(drop_path_rate=drop_path_rate)  # first: the torchvision fix
        from transformers import SegformerModel

        self.body = SegformerModel(config)
        self.out_channels = MICRO_WIDTHS
        self.strides = MICRO_STRIDES

    def forward_features(self, images: Tensor) -> list[Tensor]:
        out = self.body(pixel_values=images, output_hidden_states=True, return_dict=True)
        return list(out.hidden_states)
