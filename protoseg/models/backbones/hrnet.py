"""HRNetV2 from timm: the four parallel branches' outputs (no classification head, no incre modules)."""
from __future__ import annotations

from torch import Tensor

from .base import Backbone
from .timm_utils import create_timm

_HUB_TAGS: dict[str, str] = {"hrnet_w18_small": "ms_in1k", "hrnet_w18": "ms_in1k", "hrnet_w48": "ms_in1k"}


class HRNetV2(Backbone):
    """HRNet backbone, e.g. W48: ``forward(images [B, 3, H, W])`` returns
    ``[B, 48, H/4, W/4], [B, 96, H/8, W/8], [B, 192, H/16, W/16], [B, 384, H/32, W/32]``
    (W18-small: 16/32/64/128 channels). The V2 head (upsample and concatenate, 720 channels for W48)
    is the decoder's job (``decoders.HRNetConcatHead``).

    timm's fuse layers upsample by fixed factors, so the input is padded to a multiple of 32.
    """

    size_divisor = 32

    def __init__(self, *, arch: str = "hrnet_w48", pretrained: str | None = None) -> None:
        super().__init__()
        if arch not in _HUB_TAGS:
            raise ValueError(f"HRNet arch={arch!r}: expected one of {sorted(_HUB_TAGS)}")
        # feature_location="" -> raw branch outputs (timm's default adds the classification incre modules)
        self.body = create_timm(arch, pretrained=pretrained, hub_tag=_HUB_TAGS[arch], features_only=True,
                                feature_location="", out_indices=(1, 2, 3, 4))
        self.out_channels = tuple(self.body.feature_info.channels())
        self.strides = tuple(self.body.feature_info.reduction())

    def forward_features(self, images: Tensor) -> list[Tensor]:
        return list(self.body(images))
