"""``official-protoseg``: the release's ``hrnet_w48_proto_*.pth`` -> a protoseg checkpoint of the
``official`` variant (``d-official`` of configs/experiments.yaml), loadable by ``evaluate``/``predict``.

Release layout (shared/spec/checkpoints.md §1): ``{"config_dict", "state_dict"}``, keys with
``module.``; ``prototypes`` [C, K, D]; ``backbone.*`` (HRNet, timm's names); ``cls_head.0`` 3x3 conv
with bias, ``cls_head.1.0`` BN; ``proj_head.proj.{0,2}`` = ``proj_head.mlp2.{0,2}`` (one module under
two names); ``feat_norm``, ``mask_norm`` LayerNorms.

Mapping: ``backbone.X`` -> ``backbone.body.X``; ``cls_head.0.weight`` -> ``decoder.conv.0.weight``;
the conv bias ``b`` is folded into the BN that follows (our ConvModule conv has none):
``running_mean' = running_mean - b``, exact for BN in eval and a no-op for BN in training (batch
statistics cancel a constant shift); ``cls_head.1.0.*`` -> ``decoder.conv.1.*``;
``proj_head.proj.{0,2}`` -> ``head.projection.net.{0,2}`` (``mlp2`` must equal it);
``feat_norm`` -> ``head.feature_norm``; ``mask_norm`` -> ``head.score_norm``; ``prototypes`` ->
``head.prototypes`` (a buffer here).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .io import ConvertError, check_keys, load_foreign, state_dict_of, strip_prefix

RENAMES = (("cls_head.1.0.", "decoder.conv.1."), ("proj_head.proj.", "head.projection.net."),
           ("feat_norm.", "head.feature_norm."), ("mask_norm.", "head.score_norm."))


def convert_release_state(sd: dict[str, torch.Tensor], where: str = "<state_dict>") -> dict[str, torch.Tensor]:
    """Release state dict (with or without ``module.``) -> our official-variant model's state dict."""
    sd = strip_prefix(dict(sd), "module.")
    for key in ("prototypes", "cls_head.0.weight", "cls_head.0.bias", "cls_head.1.0.running_mean"):
        if key not in sd:
            raise ConvertError(f"{where}: key {key!r} missing: not a ProtoSeg release checkpoint")
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.startswith("proj_head.mlp2."):
            twin = "proj_head.proj." + k.removeprefix("proj_head.mlp2.")
            if twin not in sd or not torch.equal(sd[twin], v):
                raise ConvertError(f"{where}: {k} differs from {twin} (the release stores one module twice)")
            continue
        if k == "prototypes":
            out["head.prototypes"] = v
        elif k.startswith("backbone."):
            out["backbone.body." + k.removeprefix("backbone.")] = v
        elif k == "cls_head.0.weight":
            out["decoder.conv.0.weight"] = v
        elif k == "cls_head.0.bias":
            continue  # folded below
        else:
            for old, new in RENAMES:
                if k.startswith(old):
                    out[new + k.removeprefix(old)] = v
                    break
            else:
                raise ConvertError(f"{where}: unexpected key {k!r} in a ProtoSeg release checkpoint")
    bias = sd["cls_head.0.bias"]
    out["decoder.conv.1.running_mean"] = sd["cls_head.1.0.running_mean"] - bias.to(sd["cls_head.1.0.running_mean"])
    return out


def release_run_config(num_classes: int, num_prototypes: int, channels: int) -> dict[str, Any]:
    """The engine config of the release run: ``d-official`` composed at the paper scale, without
    hub weights (the checkpoint has them all)."""
    from protoseg.pipeline.experiments import build_plan

    plan = build_plan(scale="paper", seeds=[0])
    key = plan.entry_run["d-official"]
    cfg = plan.run_config(key, 0, "d-official")
    cfg["model"]["pretrained"] = None
    cfg["run"]["name"] = "official-protoseg"
    if (num_classes, num_prototypes, channels) != (19, 10, 720):
        raise ConvertError(f"release checkpoint has prototypes {num_classes}x{num_prototypes}x{channels}; "
                           "expected 19x10x720 (HRNet-W48, Cityscapes)")
    return cfg


def convert_official(src: str | Path, dst: str | Path) -> dict[str, Any]:
    """Write a protoseg checkpoint (engine format) made from the release file ``src``."""
    from protoseg.engine import checkpoint as ckpt_lib
    from protoseg.config import RunConfig
    from protoseg.models import build_model

    obj = load_foreign(src)
    sd = convert_release_state(state_dict_of(obj, src), str(src))
    c, k, d = sd["head.prototypes"].shape
    cfg = release_run_config(c, k, d)
    run_cfg = RunConfig.from_dict(cfg, source=f"{src} (converted)")
    check_loads_strictly(build_model, run_cfg.model, sd, str(src))
    config_dict = obj.get("config_dict", {}) if isinstance(obj, dict) else {}
    iteration = int(config_dict.get("iters", 0) or 0) if isinstance(config_dict, dict) else 0
    ckpt_lib.save_atomic({"format": ckpt_lib.FORMAT_VERSION, "iteration": iteration,
                          "model": sd, "config": run_cfg.to_dict(), "world_size": 1,
                          "source": {"format": "official-protoseg", "file": Path(src).name}}, Path(dst))
    return {"written": str(dst), "keys": len(sd), "iteration": iteration}


def check_loads_strictly(build, config, sd: dict, where: str) -> None:
    """``sd`` has exactly the keys and shapes of ``build(config)`` (built on the meta device)."""
    import dataclasses

    with torch.device("meta"):
        model = build(dataclasses.replace(config, pretrained=None))
    check_keys(sd, model.state_dict(), where)
