"""Mix Transformer (MiT-B0..B5), SegFormer's encoder, from ``transformers.SegformerModel``."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from protoseg._compat import ensure_torchvision_importable

from .base import Backbone

ensure_torchvision_importable()
from transformers import SegformerConfig, SegformerModel  # noqa: E402

# Hyper-parameters from the SegFormer paper (heads [1,2,5,8], sr [8,4,2,1], mlp ratio 4)
MIT_DEPTHS: dict[str, list[int]] = {
    "b0": [2, 2, 2, 2], "b1": [2, 2, 2, 2], "b2": [3, 4, 6, 3],
    "b3": [3, 4, 18, 3], "b4": [3, 8, 27, 3], "b5": [3, 6, 40, 3],
}


def mit_config(variant: str, *, drop_path_rate: float = 0.1) -> SegformerConfig:
    """The ``SegformerConfig`` of MiT-``variant`` (``"b0"`` .. ``"b5"``), encoder fields only."""
    if variant not in MIT_DEPTHS:
        raise ValueError(f"MiT variant={variant!r}: expected one of {sorted(MIT_DEPTHS)}")
    dims = [32, 64, 160, 256] if variant == "b0" else [64, 128, 320, 512]
    return SegformerConfig(depths=MIT_DEPTHS[variant], hidden_sizes=dims, num_attention_heads=[1, 2, 5, 8],
                           sr_ratios=[8, 4, 2, 1], mlp_ratios=[4, 4, 4, 4], drop_path_rate=drop_path_rate)


class MiT(Backbone):
    """MiT encoder: ``forward(images [B, 3, H, W])`` returns four maps at strides 4, 8, 16, 32
    (``ceil`` of the overlapping patch embeddings) with 32/64/160/256 (B0) or 64/128/320/512 (B1-B5)
    channels.

    ``pretrained``: ``None`` random init; ``"hub"`` the ImageNet-1k encoder ``nvidia/mit-<variant>``;
    a local directory saved by ``save_pretrained``; or a local state-dict file (``.safetensors`` or a
    torch pickle) of a ``SegformerModel`` / ``SegformerFor*`` model (a ``segformer.`` prefix is
    stripped, decode-head and classifier keys are ignored).
    """

    def __init__(self, *, variant: str = "b2", drop_path_rate: float = 0.1, pretrained: str | None = None) -> None:
        super().__init__()
        config = mit_config(variant, drop_path_rate=drop_path_rate)
        if pretrained is None:
            self.body = SegformerModel(config)
        elif pretrained == "hub":
            self.body = SegformerModel.from_pretrained(f"nvidia/mit-{variant}", drop_path_rate=drop_path_rate)
        else:
            self.body = _from_local(config, Path(pretrained).expanduser())
        self.variant = variant
        self.out_channels = tuple(self.body.config.hidden_sizes)
        self.strides = (4, 8, 16, 32)

    def forward_features(self, images: Tensor) -> list[Tensor]:
        out = self.body(pixel_values=images, output_hidden_states=True, return_dict=True)
        return list(out.hidden_states)


def _from_local(config: SegformerConfig, path: Path) -> SegformerModel:
    if path.is_dir():
        return SegformerModel.from_pretrained(str(path), drop_path_rate=config.drop_path_rate)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path} (ModelConfig.pretrained)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state.get("model", state)) if isinstance(state, dict) else state
    state = {k.removeprefix("segformer."): v for k, v in state.items()
             if not k.startswith(("decode_head.", "classifier."))}
    model = SegformerModel(config)
    fits = f"{path} does not fit MiT (depths {config.depths}, dims {config.hidden_sizes})"
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"{fits}: {str(err).splitlines()[1].strip()}") from err
    if missing or unexpected:
        raise ValueError(f"{fits}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    return model
