"""The ``optim`` section of a run config: optimizer, learning rates and the poly schedule."""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigError


@dataclass(frozen=True)
class OptimConfig:
    name: str = "sgd"  # sgd | adamw
    lr: float = 0.01
    momentum: float = 0.9  # sgd
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw
    weight_decay: float = 5e-4
    no_decay_norm_pos: bool = True  # no weight decay on norm layers and position embeddings
    head_lr_mult: float = 1.0  # lr multiplier of everything outside the backbone (SegFormer: 10)
    # lr multiplier of the backbone: 1 fine-tunes it in full (the paper); 0 freezes it (no gradient,
    # normalisation statistics kept: the mini scale's pre-trained micro backbones)
    backbone_lr_mult: float = 1.0
    poly_power: float = 0.9
    min_lr: float = 1e-4
    warmup_iters: int = 0  # linear warm-up
    warmup_ratio: float = 1e-6  # lr factor at iteration 0 of the warm-up

    @classmethod
    def preset(cls, name: str) -> "OptimConfig":
        """The paper's two recipes (shared/spec/recipes.md)."""
        if name == "sgd":
            return cls()
        if name == "adamw":
            return cls(name="adamw", lr=6e-5, weight_decay=0.01, head_lr_mult=10.0, poly_power=1.0,
                       min_lr=0.0, warmup_iters=1500)
        raise ConfigError(f"optim.name={name!r}: expected sgd or adamw")

