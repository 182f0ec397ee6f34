"""Cityscapes server submissions (Table 6) and the converted release checkpoint, on the mini twin
(make-mini cityscapes + prepare; the twin has no test split, so its val split stands in)."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from engine_helpers import run_cli, tiny_config
from protoseg.data.image_io import read_label_png
from protoseg.engine import checkpoint as ckpt_lib
from protoseg.config import RunConfig
from protoseg.engine.submission import label_to_train_lut, train_to_label_lut
from protoseg.models import build_model


def _checkpoint(path, cfg: dict) -> None:
    torch.manual_seed(0)
    run_cfg = RunConfig.from_dict(cfg)
    model = build_model(run_cfg.model)
    ckpt_lib.save_atomic({"format": ckpt_lib.FORMAT_VERSION, "iteration": 0, "model": model.state_dict(),
                          "config": run_cfg.to_dict(), "world_size": 1}, path)


def test_lut_is_the_cityscapes_label_map() -> None:
    lut = train_to_label_lut()
    assert lut[:19].tolist() == [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
    assert (label_to_train_lut()[lut[:19]] == np.arange(19)).all()


@pytest.mark.slow
def test_submission_round_trips_to_the_predictions(root, tmp_path) -> None:
    from protoseg.data.dataset import SegmentationDataset
    from protoseg.evaluation.inference import inference
    from protoseg.engine.predict import load_run

    ck = tmp_path / "model.pt"
    cfg = tiny_config(root, tmp_path)
    cfg["model"]["align_corners"] = True  # the model's own mode reaches the submission's resize
    _checkpoint(ck, cfg)
    out = tmp_path / "sub"
    proc = run_cli(["predict", "--format", "cityscapes-submission", "--checkpoint", str(ck), "--split", "val",
                    "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["images"] == 60  # the val split of the Cityscapes twin
    run = load_run(ck, device="cpu")
    ds = SegmentationDataset.from_spec(root, run.spec, "val", train=False)
    with zipfile.ZipFile(out / "submission.zip") as zf:
        names = sorted(zf.namelist())
        assert names == sorted(f"{s}_leftImg8bit.png" for s in ds.stems)
        for i in range(len(ds)):
            item = ds[i]
            stem = item["stem"]
            city, seq, frame = stem.split("_")
            assert len(seq) == 6 and len(frame) == 6 and city.isalpha()
            label_ids = read_label_png(out / f"{stem}_leftImg8bit.png")
            assert label_ids.dtype == np.uint8 and label_ids.shape == tuple(item["label"].shape)
            assert set(np.unique(label_ids)) <= set(train_to_label_lut()[:19].tolist())
            with zf.open(f"{stem}_leftImg8bit.png") as f:
                assert f.read() == (out / f"{stem}_leftImg8bit.png").read_bytes()
            with torch.no_grad():
                logits = inference(lambda t: run.model(t).logits.float(), item["image"][None], run.spec,
                                   tuple(item["label"].shape), align_corners=True)
            pred = logits.argmax(1)[0].numpy()
            assert (label_to_train_lut()[label_ids] == pred).all()


def test_submission_errors_are_clear(root, tmp_path) -> None:
    ck = tmp_path / "model.pt"
    _checkpoint(ck, tiny_config(root, tmp_path))
    proc = run_cli(["predict", "--format", "cityscapes-submission", "--checkpoint", str(ck), "--split", "test",
                    "--out", str(tmp_path / "sub")])
    assert proc.returncode == 2 and "test" in proc.stderr and "val" in proc.stderr
    assert not (tmp_path / "sub").exists()


@pytest.mark.slow
def test_converted_release_checkpoint_evaluates(root, tmp_path) -> None:
    """A release-layout file at full HRNet-W48 size (seeded values) -> convert-checkpoint ->
    evaluate on the prepared twin (val), with the release's test protocol (native size, whole)."""
    from test_convert import OFFICIAL_W48, _release_layout, _release_state

    from protoseg.models import ModelConfig

    with torch.device("meta"):
        layout = _release_layout(build_model(ModelConfig(**OFFICIAL_W48)).state_dict())
    src = tmp_path / "hrnet_w48_proto_lr1x_hrnet_proto_80k_latest.pth"
    torch.save({"config_dict": {"iters": 80000, "performance": np.float64(0.8)}, "state_dict": _release_state(layout)},
               src)
    dst = tmp_path / "converted.pt"
    proc = run_cli(["convert-checkpoint", "--format", "official-protoseg", str(src), str(dst)], timeout=600)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(["evaluate", "--checkpoint", str(dst), "--out", str(tmp_path / "eval"), "--quiet",
                    f"data.root={root}", "data.mini=true"], timeout=600)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["iteration"] == 80000 and 0.0 <= metrics["mIoU"] <= 1.0
    ck = ckpt_lib.load_checkpoint(dst)
    assert ck["config"]["data"]["class_weight"][0] == 0.8373 and ck["config"]["model"]["pretrained"] is None
