"""The mini recipe (configs/scales/mini.yaml, docs/mini_recipe.md): a tiny configuration learns on a
small twin, the momentum keeps the paper's horizon, and a pre-trained backbone round-trips through
``protoseg export-backbone`` into ``model.pretrained``."""
from __future__ import annotations

import json

import pytest
import torch

from protoseg.pipeline.experiments import load_scale, momentum_for_horizon, pretrain_config
from tests.engine_helpers import make_root, tiny_config

LEARNS_ABOVE = 0.06  # mIoU; measured 0.094 after 60 steps (the untrained model predicts one class)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A softmax MiT-B0 trained 60 steps at batch 8 on the Cityscapes twin (the mini recipe's data
    settings), from scratch."""
    from protoseg.config import RunConfig
    from protoseg.engine.train import train

    base = tmp_path_factory.mktemp("recipe")
    root = make_root(base)
    cfg = tiny_config(root, base / "runs", name="learns",
                      model={"head": "softmax", "decoder_channels": 32, "num_prototypes": 10},
                      optim={"name": "adamw", "lr": 1e-3, "warmup_iters": 5},
                      train={"iters": 60, "batch_size": 8, "log_interval": 20, "ckpt_interval": 1000,
                             "deterministic": False},
                      data={"ratio_range": [0.75, 1.5]})
    cfg["model"].pop("num_prototypes")
    metrics = train(RunConfig.from_dict(cfg))
    return base / "runs" / "learns", metrics


def test_tiny_recipe_learns_above_chance(trained):
    run_dir, metrics = trained
    assert metrics["mIoU"] > LEARNS_ABOVE
    assert json.loads((run_dir / "metrics.json").read_text())["mIoU"] == pytest.approx(metrics["mIoU"])


def test_exported_backbone_loads_strictly_as_pretrained(trained, tmp_path):
    from protoseg.engine.export import export_backbone
    from protoseg.models import build_model

    run_dir, _ = trained
    out = export_backbone(run_dir / "checkpoints" / "final.pt", tmp_path / "mit_b0.pt")
    ck = torch.load(run_dir / "checkpoints" / "final.pt", map_location="cpu", weights_only=True)
    model = build_model(backbone="mit_b0", head="prototype", num_classes=19, decoder_channels=32,
                        pretrained=str(out))
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, ck["model"][f"backbone.{k}"].to(v.dtype)), k


def test_export_removes_the_checkpoint_only_after_writing(trained, tmp_path):
    import shutil

    from protoseg.engine.checkpoint import CheckpointError
    from protoseg.engine.export import export_backbone
    from protoseg.models.backbones.weights import read_backbone_file

    run_dir, _ = trained
    kept = export_backbone(run_dir / "checkpoints" / "final.pt", tmp_path / "kept.pt")
    ckpt = tmp_path / "final.pt"
    shutil.copy(run_dir / "checkpoints" / "final.pt", ckpt)
    out = export_backbone(ckpt, tmp_path / "mit_b0.pt", remove_checkpoint=True)
    assert not ckpt.exists() and out.is_file()
    got, want = read_backbone_file(out)["state_dict"], read_backbone_file(kept)["state_dict"]
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in got)
    # a file that is not a protoseg checkpoint is refused and left in place
    bad = tmp_path / "notes.pt"
    torch.save({"weights": torch.zeros(2)}, bad)
    with pytest.raises(CheckpointError, match="not a protoseg checkpoint"):
        export_backbone(bad, tmp_path / "x.pt", remove_checkpoint=True)
    assert bad.is_file() and not (tmp_path / "x.pt").exists()


def test_momentum_keeps_the_paper_horizon():
    # after the mini schedule, the initial prototypes keep the share the paper's schedule leaves
    for mu, paper, mini in ((0.999, 40000, 120), (0.99, 80000, 120), (0.9, 160000, 80)):
        m = momentum_for_horizon(mu, paper, mini)
        assert m ** mini == pytest.approx(mu ** paper, rel=1e-3, abs=1e-12)
    assert momentum_for_horizon(0.999, 40000, 120) == pytest.approx(0.716412, abs=1e-6)
    assert momentum_for_horizon(0.0, 40000, 120) == 0.0


def test_pretrain_config_uses_the_pretraining_twin_and_no_weights():
    scale = load_scale("mini")
    cfg = pretrain_config(scale, "hrnet_w18_small")
    assert cfg["data"]["root"] == scale["pretrain"]["root"] and cfg["model"]["head"] == "softmax"
    assert "pretrained" not in cfg["model"] and cfg["optim"]["name"] == "sgd"
    assert pretrain_config(scale, "swin_tiny")["train"]["iters"] == 100
