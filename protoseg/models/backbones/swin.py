"""Swin Transformer from timm, as MMSegmentation's ``SwinTransformer`` backbone (norm on every output)."""
from __future__ import annotations

from torch import Tensor, nn

from .base import Backbone
from .timm_utils import create_timm

# size -> (timm architecture at window 7, at window 12, hub tag)
_SWINS: dict[str, dict[int, str]] = {
    "tiny": {7: "swin_tiny_patch4_window7_224"},
    "base": {7: "swin_base_patch4_window7_224", 12: "swin_base_patch4_window12_384"},
}


class Swin(Backbone):
    """Swin-T/B: ``forward(images [B, 3, H, W])`` returns four NCHW maps at strides 4, 8, 16, 32 with
    ``embed_dim * (1, 2, 4, 8)`` channels (Swin-B: 128, 256, 512, 1024), each through its own LayerNorm
    as MMSeg's backbone does (``out_indices`` norms; timm's final classification norm is dropped).

    ``window_size`` 7 or 12 (Swin-B); other sizes build the window-7 architecture with that window
    (hub weights then get their relative-position tables resized by timm). The image is padded to a
    multiple of 32; windows are always partitioned, with padding (``always_partition``), so any
    feature size works.
    """

    size_divisor = 32

    def __init__(self, *, size: str = "base", window_size: int = 7, img_size: int = 512,
                 drop_path_rate: float = 0.3, pretrained: str | None = None) -> None:
        super().__init__()
        if size not in _SWINS:
            raise ValueError(f"Swin size={size!r}: expected one of {sorted(_SWINS)}")
        if window_size < 1:
            raise ValueError(f"Swin window_size={window_size!r}: expected a positive integer")
        archs = _SWINS[size]
        arch = archs.get(window_size, archs[7])
        hub_tag = "ms_in1k" if window_size in archs else None
        self.body = create_timm(arch, pretrained=pretrained, hub_tag=hub_tag, features_only=True,
                                feature_cls="getter", out_indices=(0, 1, 2, 3), img_size=img_size,
                                strict_img_size=False, always_partition=True, window_size=window_size,
                                drop_path_rate=drop_path_rate)
        self.window_size = window_size
        self.out_channels = tuple(self.body.feature_info.channels())
        self.strides = tuple(self.body.feature_info.reduction())
        self.norms = nn.ModuleList(nn.LayerNorm(c) for c in self.out_channels)

    def forward_features(self, images: Tensor) -> list[Tensor]:
        feats = self.body(images)  # NCHW
        return [norm(f.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous() for norm, f in zip(self.norms, feats)]
