"""`train.final_ckpt=weights` (a finished run keeps only its weights) and the progress lines written when
stderr is not a terminal. Real training of a tiny model on the miniature Cityscapes twin."""
from __future__ import annotations

import pytest
import torch

from engine_helpers import run_cli, tiny_config, write_config
from protoseg.engine import checkpoint as ckpt_lib


@pytest.mark.slow
def test_weights_only_final_checkpoint_and_progress_lines(root, tmp_path):
    cfg = tiny_config(root, tmp_path / "runs", train={"final_ckpt": "weights", "keep_ckpts": 0, "log_interval": 2})
    path = write_config(cfg, tmp_path / "c.yaml")
    proc = run_cli(["train", "--config", str(path)])
    assert proc.returncode == 0, proc.stderr
    ckpt_dir = tmp_path / "runs/run/checkpoints"
    assert [p.name for p in ckpt_dir.iterdir()] == ["final.pt"]  # the periodic ones (2, 4) are gone
    final = torch.load(ckpt_dir / "final.pt", weights_only=True)
    assert set(final) == {"format", "iteration", "model", "config", "world_size"} and final["iteration"] == 6
    assert ckpt_lib.load_checkpoint(ckpt_dir / "final.pt")["model"].keys() == final["model"].keys()
    # stderr is a pipe here, not a terminal: one line per log_interval
    lines = [x for x in proc.stderr.splitlines() if " iter " in x]
    assert [x.split(" iter ")[1].split()[0] for x in lines] == ["2/6", "4/6", "6/6"], proc.stderr
    assert "img/s" in lines[-1] and "total" in lines[-1]

    again = run_cli(["train", "--config", str(path), "--resume", "auto"])  # finished: nothing to train
    assert again.returncode == 0, again.stderr
    assert " iter " not in again.stderr

    with_more = write_config({**cfg, "train": {**cfg["train"], "iters": 8}}, tmp_path / "c8.yaml")
    more = run_cli(["train", "--config", str(with_more), "--resume", "auto"])
    assert more.returncode != 0 and "final.pt" in more.stderr


def test_final_ckpt_value_is_checked(root, tmp_path):
    path = write_config(tiny_config(root, tmp_path / "runs", train={"final_ckpt": "slim"}), tmp_path / "c.yaml")
    proc = run_cli(["train", "--config", str(path)])
    assert proc.returncode != 0 and "train.final_ckpt" in proc.stderr and "full, weights or weights_fp16" in proc.stderr


@pytest.mark.slow
def test_fp16_weights_load_back_into_the_model(root, tmp_path):
    from protoseg.engine.predict import load_run

    cfg = tiny_config(root, tmp_path / "runs", train={"final_ckpt": "weights_fp16", "iters": 2})
    proc = run_cli(["train", "--config", str(write_config(cfg, tmp_path / "c.yaml"))])
    assert proc.returncode == 0, proc.stderr
    final = torch.load(tmp_path / "runs/run/checkpoints/final.pt", weights_only=True)
    floats = [v for v in final["model"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    run = load_run(tmp_path / "runs/run/checkpoints/final.pt", device="cpu")
    assert all(p.dtype == torch.float32 for p in run.model.parameters())
