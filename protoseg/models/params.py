"""Parameter counts as the paper reports them: learnable parameters only (buffers such as BN
statistics and the nonparametric prototypes are excluded)."""
from __future__ import annotations

from torch import nn


def count_parameters(module: nn.Module | None) -> int:
    """Number of learnable (``requires_grad``) parameters of ``module`` (0 for ``None``)."""
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def parameter_breakdown(model: nn.Module) -> dict[str, int]:
    """Learnable parameters per top-level part (``backbone``, ``decoder``, ``head``, ``aux_head``)
    and ``total``."""
    parts = {name: count_parameters(child) for name, child in model.named_children()}
    parts["total"] = count_parameters(model)
    return parts


def count_config_parameters(config) -> int:
    """Learnable parameters of the model ``build_model(config)`` would return, counted on a copy built
    on the meta device (same modules and shapes, no memory, no initialisation, no weights loaded)."""
    import dataclasses

    import torch

    from .builder import build_model

    with torch.device("meta"):
        return count_parameters(build_model(dataclasses.replace(config, pretrained=None)))
