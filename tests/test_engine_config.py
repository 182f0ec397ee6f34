"""Config validation and overrides; optimizer parameter groups and the poly/warm-up schedule."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from protoseg.config import ConfigError, OptimConfig, RunConfig, load_config
from protoseg.engine.optim import build_optimizer, build_scheduler, param_groups, poly_factor


def test_overrides_and_resolved_model(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {backbone: mit_b0, head: prototype}\ndata: {dataset: cityscapes}\n")
    cfg = load_config(path, ["train.iters=7", "optim.lr=0.5", "model.method.momentum=0.99",
                             "data.crop_size=[32, 64]"])
    assert cfg.train.iters == 7 and cfg.optim.lr == 0.5 and cfg.data.crop_size == [32, 64]
    assert cfg.model.num_classes == 19  # from the dataset
    assert cfg.model.method.momentum == 0.99 and cfg.model.decoder == "mlp"
    assert RunConfig.from_dict(cfg.to_dict()) == cfg  # the written file round-trips


def test_unknown_key_lists_valid_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"train: unknown key\(s\) \['itres'\]; valid keys: iters, batch_size"):
        load_config(None, ["train.itres=3"])
    with pytest.raises(ConfigError, match=r"unknown section\(s\) \['trian'\]"):
        load_config(None, ["trian.iters=3"])
    with pytest.raises(ConfigError, match="valid keys: .*backbone"):
        load_config(None, ["model.backbon=mit_b0"])
    with pytest.raises(ConfigError, match=r"train.iters='x': expected an int"):
        load_config(None, ["train.iters=x"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="a multiple of train.grad_accum=3"):
        load_config(None, ["train.batch_size=16", "train.grad_accum=3"])


def test_adamw_preset():
    cfg = load_config(None, ["optim.name=adamw"])
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.head_lr_mult, cfg.optim.warmup_iters,
            cfg.optim.poly_power) == (6e-5, 0.01, 10.0, 1500, 1.0)


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.LayerNorm(4))
        self.backbone.pos_embed = nn.Parameter(torch.zeros(1, 4))
        self.decoder = nn.Sequential(nn.Conv2d(4, 4, 1), nn.GroupNorm(2, 4))


def test_param_groups_no_decay_on_norms_and_pos_embed_and_head_lr():
    m = _Tiny()
    groups = {g["name"]: g for g in param_groups(m, OptimConfig(name="adamw", lr=1.0, weight_decay=0.01,
                                                                head_lr_mult=10.0))}
    ids = lambda g: {id(p) for p in g["params"]}  # noqa: E731
    bb = m.backbone
    assert ids(groups["backbone"]) == {id(bb[0].weight), id(bb[0].bias)}
    assert ids(groups["backbone_no_decay"]) == {id(p) for p in (*bb[1].parameters(), *bb[2].parameters(),
                                                                bb.pos_embed)}
    assert ids(groups["head"]) == {id(p) for p in m.decoder[0].parameters()}
    assert ids(groups["head_no_decay"]) == {id(p) for p in m.decoder[1].parameters()}
    assert groups["head"]["lr"] == 10.0 and groups["backbone"]["lr"] == 1.0
    assert groups["backbone_no_decay"]["weight_decay"] == 0.0 and groups["head"]["weight_decay"] == 0.01
    assert sum(len(g["params"]) for g in groups.values()) == len(list(m.parameters()))


def test_poly_schedule_with_warmup():
    cfg = OptimConfig(name="adamw", lr=1.0, min_lr=0.0, poly_power=1.0, warmup_iters=10, warmup_ratio=1e-6)
    assert poly_factor(0, 100, cfg) == pytest.approx(1e-6)
    assert poly_factor(5, 100, cfg) == pytest.approx(0.95 * (1 - 0.5 * (1 - 1e-6)))
    assert poly_factor(50, 100, cfg) == pytest.approx(0.5)
    sgd = OptimConfig(lr=0.01, min_lr=1e-4, poly_power=0.9)
    assert poly_factor(100, 100, sgd) * 0.01 == pytest.approx(1e-4)
    m = _Tiny()
    opt = build_optimizer(m, OptimConfig(name="adamw", lr=1.0, head_lr_mult=10.0, warmup_iters=0, min_lr=0.0,
                                         poly_power=1.0))
    sched = build_scheduler(opt, OptimConfig(name="adamw", lr=1.0, head_lr_mult=10.0, warmup_iters=0,
                                             min_lr=0.0, poly_power=1.0), 4)
    for _ in range(2):
        opt.step()
        sched.step()
    assert {g["name"]: g["lr"] for g in opt.param_groups}["head"] == pytest.approx(5.0)
