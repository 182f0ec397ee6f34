"""Optimizers with the paper's parameter groups, and the poly schedule with linear warm-up.

Groups (MMSegmentation's ``paramwise_cfg`` of the SegFormer/Swin recipes):
- no weight decay on the parameters of normalisation layers (BatchNorm, SyncBatchNorm, LayerNorm,
  GroupNorm) and on position embeddings (names containing ``pos_embed``, ``pos_block``,
  ``position_bias_table`` or ``position_embeddings``);
- everything outside ``model.backbone`` (decoder, head, auxiliary head) gets ``lr * head_lr_mult``,
  the backbone ``lr * backbone_lr_mult`` (0: frozen by ``SegmentationModel.freeze_backbone``, so its
  parameters join no group).
"""
from __future__ import annotations

import torch
from torch import nn

from protoseg.config import OptimConfig

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
POSITION_KEYS = ("pos_embed", "pos_block", "position_bias_table", "position_embeddings",
                 "absolute_pos_embed")


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Up to four groups, (backbone | head) x (decay | no decay), each with ``lr_mult`` and a
    ``name``; empty groups are dropped. Parameters are visited in ``named_parameters`` order."""
    model = _unwrap(model)
    no_decay_ids: set[int] = set()
    if cfg.no_decay_norm_pos:
        for mod_name, module in model.named_modules():
            if isinstance(module, NORM_TYPES):
                no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
        for name, p in model.named_parameters():
            if any(k in name for k in POSITION_KEYS):
                no_decay_ids.add(id(p))
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_head = not name.startswith("backbone.")
        groups.setdefault((is_head, id(p) in no_decay_ids), []).append(p)
    out = []
    for (is_head, no_decay), params in sorted(groups.items()):
        mult = cfg.head_lr_mult if is_head else cfg.backbone_lr_mult
        out.append({"params": params, "lr": cfg.lr * mult, "initial_lr": cfg.lr * mult, "lr_mult": mult,
                    "weight_decay": 0.0 if no_decay else cfg.weight_decay,
                    "name": f"{'head' if is_head else 'backbone'}{'_no_decay' if no_decay else ''}"})
    return out


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    raise ValueError(f"optim.name={cfg.name!r}: expected sgd or adamw")


def poly_factor(it: int, total: int, cfg: OptimConfig) -> float:
    """lr / base lr at iteration ``it`` (0-based): MMCV's PolyLrUpdaterHook with linear warm-up:
    ``(base - min) * (1 - it/total)^power + min``, times ``1 - (1 - it/warmup) * (1 - ratio)`` during
    warm-up."""
    progress = min(it, total) / total
    lr = (cfg.lr - cfg.min_lr) * (1.0 - progress) ** cfg.poly_power + cfg.min_lr
    if cfg.warmup_iters > 0 and it < cfg.warmup_iters:
        lr *= 1.0 - (1.0 - it / cfg.warmup_iters) * (1.0 - cfg.warmup_ratio)
    return lr / cfg.lr


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_iters: int):
    """A ``LambdaLR`` stepped once per optimizer step (its state dict is checkpointed)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: poly_factor(it, total_iters, cfg))
