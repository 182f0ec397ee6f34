"""ResNet V1c (deep stem), dilated to output stride 8, from timm (MMSeg's ``ResNetV1c`` + ``d8``)."""
from __future__ import annotations

from torch import Tensor

from .base import Backbone
from .timm_utils import create_timm

# depth -> (timm architecture, block kwargs, hub tag with the same deep-stem construction)
_RESNETS: dict[int, tuple[str, dict, str | None]] = {
    18: ("resnet18", {"stem_type": "deep", "stem_width": 32}, None),
    50: ("resnet50c", {}, "gluon_in1k"),
    101: ("resnet101c", {}, "gluon_in1k"),
}


class ResNetV1c(Backbone):
    """ResNet with the V1c deep stem (three 3x3 convs 32-32-64) and dilated stages 3-4.

    ``forward(images [B, 3, H, W])`` returns the four stage outputs
    ``[B, 256|64, H/4, W/4], [B, 512|128, H/8, W/8], [B, 1024|256, H/8, W/8], [B, 2048|512, H/8, W/8]``
    (bottleneck | basic blocks) at ``output_stride=8``: stage 3 uses dilation 2, stage 4 dilation 4,
    each stage's first block keeps the previous dilation (MMSeg's ``contract_dilation``).
    """

    def __init__(self, *, depth: int = 101, output_stride: int = 8, pretrained: str | None = None) -> None:
        super().__init__()
        if depth not in _RESNETS:
            raise ValueError(f"ResNet depth={depth!r}: expected one of {sorted(_RESNETS)}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"ResNet output_stride={output_stride!r}: expected 8, 16 or 32")
        name, kwargs, hub_tag = _RESNETS[depth]
        self.body = create_timm(name, pretrained=pretrained, hub_tag=hub_tag, features_only=True,
                                output_stride=output_stride, out_indices=(1, 2, 3, 4), **kwargs)
        self.out_channels = tuple(self.body.feature_info.channels())
        self.strides = tuple(self.body.feature_info.reduction())

    def forward_features(self, images: Tensor) -> list[Tensor]:
        return list(self.body(images))
