"""Every knob of the nonparametric prototype method, with the paper and official presets.

``MethodConfig.for_variant("paper")`` is the method as the paper states it (the default);
``MethodConfig.for_variant("official")`` reproduces the released code (tfzhou/ProtoSeg @1c4a7784).
Each of the seven documented differences (``DIFFERENCES``) is its own field, so an ablation can flip
one at a time: ``MethodConfig.for_variant("paper", update_assignment="gumbel")``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

_CHOICES: dict[str, tuple[str, ...]] = {
    "distance": ("cosine", "euclidean", "huberized"),
    "update_assignment": ("argmax", "gumbel"),
    "update_pixels": ("all", "correct"),
    "class_score_norm": ("none", "layernorm", "temperature"),
    "projection_norm": ("channel", "width"),
    "ddp_reduce": ("sum", "mean"),
}


@dataclass(frozen=True)
class MethodConfig:
    """Hyper-parameters and switches of the prototype head (paper defaults).

    The model-level values of the head live in ``ModelConfig`` only: K (``num_prototypes``), the preset
    (``method_variant``) and the upsampling mode (``align_corners``); pixels whose label is outside
    ``[0, C)`` (the dataset's ignore value) are unlabelled."""

    momentum: float = 0.999  # mu of Eq. 14 (Table 5c)
    sinkhorn_iters: int = 3  # Sinkhorn-Knopp iterations for Eq. 10
    sinkhorn_epsilon: float = 0.05  # kappa of Eq. 9
    distance: str = "cosine"  # Table 5d: cosine | euclidean (un-normalised) | huberized
    huber_delta: float = 1.0  # delta of the Huberized distance (its value is lost from the paper text)
    ppc_weight: float = 0.01  # lambda_1 of Eq. 13

    # --- the seven paper/official differences (../shared/spec/method.md) ---
    update_assignment: str = "argmax"  # argmax of the plan | gumbel: Gumbel-hard sample of it
    gumbel_tau: float = 0.5  # temperature of the official Gumbel sample (no effect on a hard argmax)
    update_pixels: str = "all"  # all labelled pixels | correct: only correctly predicted ones
    ppc_temperature: float = 0.1  # tau of Eq. 11
    ppd_weight: float = 0.01  # lambda_2 of Eq. 13
    class_score_norm: str = "none"  # none (Eq. 6) | layernorm (official mask_norm) | temperature
    projection_norm: str = "channel"  # l2 over channels | width: the release's dim=-1 on NCHW
    ddp_reduce: str = "sum"  # sum: all-reduce sums+counts, then normalise | mean: average prototypes

    # --- the rest of the official model tail, on together with the official variant ---
    class_score_temperature: float = 0.1  # scale of class_score_norm="temperature": scores / T
    projection: bool = False  # 1x1 conv, ReLU, 1x1 conv projection head before the embedding
    feature_layernorm: bool = False  # LayerNorm(D) (affine) on pixel features before l2
    max_chunk_elements: int = 1 << 26  # pixel x prototype similarities held at once (memory bound)

    def __post_init__(self) -> None:
        for key, allowed in _CHOICES.items():
            value = getattr(self, key)
            if value not in allowed:
                raise ValueError(f"MethodConfig.{key}={value!r}: expected one of {', '.join(allowed)}")
        _check(0.0 <= self.momentum <= 1.0, "momentum", self.momentum, "a value in [0, 1]")
        _check(self.sinkhorn_iters >= 1, "sinkhorn_iters", self.sinkhorn_iters, "an integer >= 1")
        for key in ("sinkhorn_epsilon", "ppc_temperature", "gumbel_tau", "class_score_temperature",
                    "huber_delta"):
            _check(getattr(self, key) > 0, key, getattr(self, key), "a value > 0")
        for key in ("ppc_weight", "ppd_weight"):
            _check(getattr(self, key) >= 0, key, getattr(self, key), "a value >= 0")
        _check(self.max_chunk_elements >= 1, "max_chunk_elements", self.max_chunk_elements, ">= 1")

    @classmethod
    def for_variant(cls, variant: str = "paper", **overrides: Any) -> "MethodConfig":
        """The preset of ``variant`` with ``overrides`` applied; unknown keys are an error."""
        if variant not in VARIANTS:
            raise ValueError(f"variant={variant!r}: expected one of {', '.join(VARIANTS)}")
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise ValueError(f"unknown MethodConfig key(s) {unknown}; valid keys: {', '.join(sorted(valid))}")
        return dataclasses.replace(VARIANTS[variant], **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def normalized(self) -> bool:
        """Embeddings and prototypes live on the unit sphere (cosine distance)."""
        return self.distance == "cosine"


def _check(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ValueError(f"MethodConfig.{key}={value!r}: expected {expected}")


PAPER = MethodConfig()
OFFICIAL = MethodConfig(
    update_assignment="gumbel",
    update_pixels="correct",
    ppc_temperature=1.0,
    ppd_weight=0.001,
    class_score_norm="layernorm",
    projection_norm="width",
    ddp_reduce="mean",
    projection=True,
    feature_layernorm=True,
)
VARIANTS: dict[str, MethodConfig] = {"paper": PAPER, "official": OFFICIAL}
# each preset's bilinear upsampling (ModelConfig.align_corners' default for the prototype head): the
# release resizes class scores and logits with align_corners=True, MMSegmentation with False
VARIANT_ALIGN_CORNERS: dict[str, bool] = {"paper": False, "official": True}

# The seven documented differences: field -> (paper value, official value).
DIFFERENCES: dict[str, tuple[Any, Any]] = {
    name: (getattr(PAPER, name), getattr(OFFICIAL, name))
    for name in ("update_assignment", "update_pixels", "ppc_temperature", "ppd_weight",
                 "class_score_norm", "projection_norm", "ddp_reduce")
}
