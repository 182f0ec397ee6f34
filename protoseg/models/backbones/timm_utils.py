"""Creating timm models with optional ImageNet weights (hub or local file), never downloading unasked."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from protoseg._compat import ensure_torchvision_importable

ensure_torchvision_importable()
import timm  # noqa: E402


def create_timm(name: str, *, pretrained: str | None, hub_tag: str | None, **kwargs: Any):
    """``timm.create_model(name, **kwargs)`` with weights chosen by ``pretrained``.

    Args:
        name: the timm architecture (e.g. ``"resnet101c"``).
        pretrained: ``None`` random init; ``"hub"`` the timm hub weights ``name.hub_tag`` (needs network
            or a filled cache); anything else is a local checkpoint path, loaded through timm so that
            its checkpoint filter (classifier removal, Swin position-bias resizing) applies.
        hub_tag: the pretrained tag used for ``"hub"`` (``None``: this model has no hub weights).
    """
    if pretrained is None:
        return timm.create_model(name, pretrained=False, **kwargs)
    if pretrained == "hub":
        if hub_tag is None:
            raise ValueError(f"pretrained='hub': timm has no ImageNet weights for {name} with this "
                             "construction; give a local checkpoint path instead")
        return timm.create_model(f"{name}.{hub_tag}", pretrained=True, **kwargs)
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path} (ModelConfig.pretrained)")
    model_name = f"{name}.{hub_tag}" if hub_tag else name
    return timm.create_model(model_name, pretrained=True,
                             pretrained_cfg_overlay={"file": str(path), "hf_hub_id": None, "url": None},
                             **kwargs)
