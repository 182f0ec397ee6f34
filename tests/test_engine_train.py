"""Training loop, checkpoints and resume, evaluation files, the NaN guard and SIGUSR1, on CPU with a
tiny MiT-B0 + prototype head and the miniature Cityscapes twin."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from engine_helpers import cli_env, run_cli, tiny_config, write_config
from protoseg.engine import checkpoint as ckpt_lib
from protoseg.engine import train as train_mod
from protoseg.config import RunConfig
from protoseg.engine.signals import EXIT_PREEMPTED, NonFiniteLossError
from protoseg.engine.train import FAULT_SIGKILL_ENV, train


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _states_equal(a: dict, b: dict) -> list[str]:
    return [k for k in a if not torch.equal(a[k], b[k])]


@pytest.mark.slow
def test_train_writes_run_files_and_resume_after_sigkill_is_bitwise(root, tmp_path):
    # uninterrupted reference, in process
    ref_cfg = RunConfig.from_dict(tiny_config(root, tmp_path, "ref"))
    ref_metrics = train(ref_cfg)
    ref_dir = tmp_path / "ref"
    for name in ("config.yaml", "run_info.json", "train_log.jsonl", "metrics.json", "per_class_iou.csv",
                 "confusion.png", "checkpoints/final.pt"):
        assert (ref_dir / name).is_file(), name
    log = [json.loads(x) for x in (ref_dir / "train_log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert {"ce", "ppc", "ppd", "total", "lr", "img_per_s"} <= set(log[0])
    saved = json.loads((ref_dir / "metrics.json").read_text())
    assert saved["mIoU"] == pytest.approx(ref_metrics["mIoU"])
    assert len((ref_dir / "per_class_iou.csv").read_text().splitlines()) == 1 + 19
    # the written config is the resolved one and loads back to the same config
    assert RunConfig.from_dict(__import__("yaml").safe_load((ref_dir / "config.yaml").read_text())) == ref_cfg

    # the same run killed by SIGKILL inside iteration 5 (checkpoints at 2 and 4 exist)
    cfg_path = write_config(tiny_config(root, tmp_path, "killed"), tmp_path / "killed.yaml")
    proc = run_cli(["train", "--config", str(cfg_path)], env=cli_env(**{FAULT_SIGKILL_ENV: 5}))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    ckdir = tmp_path / "killed" / "checkpoints"
    assert sorted(p.name for p in ckdir.iterdir() if p.suffix == ".pt") == ["iter_00000002.pt",
                                                                            "iter_00000004.pt"]
    # truncate the newest one: --resume auto must skip it with a warning and start from iteration 2
    data = (ckdir / "iter_00000004.pt").read_bytes()
    (ckdir / "iter_00000004.pt").write_bytes(data[: len(data) // 2])
    with pytest.warns(RuntimeWarning, match="iter_00000004.pt"):
        metrics = train(RunConfig.from_dict(tiny_config(root, tmp_path, "killed")), resume="auto")
    final_ref = ckpt_lib.load_checkpoint(ref_dir / "checkpoints" / "final.pt")
    final = ckpt_lib.load_checkpoint(ckdir / "final.pt")
    assert _states_equal(final_ref["model"], final["model"]) == []
    assert "head.prototypes" in final["model"]
    assert metrics["confusion"] == ref_metrics["confusion"]
    log2 = [json.loads(x) for x in (tmp_path / "killed" / "train_log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in log2] == [1, 2, 3, 4, 5, 6]
    assert [r["total"] for r in log2] == [r["total"] for r in log]


def test_checkpoint_contents(root, tmp_path):
    cfg = RunConfig.from_dict(tiny_config(root, tmp_path, train={"iters": 2, "final_eval": False}))
    train(cfg)
    ck = ckpt_lib.load_checkpoint(tmp_path / "run" / "checkpoints" / "final.pt")
    assert ck["iteration"] == 2
    assert set(ck) >= {"model", "optimizer", "scheduler", "scaler", "rng", "data_position", "config"}
    assert ck["data_position"] == {"iteration": 2, "epoch": 0, "batch_in_epoch": 2}
    assert set(ck["rng"][0]) >= {"python", "numpy", "torch"}
    assert ck["scheduler"]["last_epoch"] == 2
    # a fresh run refuses to overwrite an earlier one without --resume
    with pytest.raises(Exception, match="--resume auto"):
        train(cfg)


def test_nan_guard_names_iteration_and_term_and_keeps_last_checkpoint(root, tmp_path, monkeypatch):
    real = train_mod.compute_losses
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        terms = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 4:  # iteration 3 (0-based), after the checkpoint of iteration 2
            terms["ppc"] = terms["ppc"] * float("nan")
        return terms

    monkeypatch.setattr(train_mod, "compute_losses", poisoned)
    cfg = RunConfig.from_dict(tiny_config(root, tmp_path))
    with pytest.raises(NonFiniteLossError, match=r"iteration 3: loss term 'ppc'") as exc:
        train(cfg)
    assert exc.value.iteration == 3 and exc.value.term == "ppc"
    ckdir = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckdir.glob("*.pt")) == ["iter_00000002.pt"]
    assert ckpt_lib.load_checkpoint(ckdir / "iter_00000002.pt")["iteration"] == 2


@pytest.mark.slow
def test_sigusr1_writes_checkpoint_and_exits_with_retry_status_and_requeues_in_slurm(root, tmp_path):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/scontrol.log\n")
    (fake_bin / "scontrol").chmod(0o755)
    cfg = tiny_config(root, tmp_path, train={"iters": 100000, "ckpt_interval": 100000})
    cfg_path = write_config(cfg, tmp_path / "c.yaml")
    env = cli_env(SLURM_JOB_ID="4242", PATH=f"{fake_bin}:" + __import__("os").environ["PATH"])
    proc = subprocess.Popen([sys.executable, "-m", "protoseg.cli", "train", "--config", str(cfg_path)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "run" / "train_log.jsonl"
    deadline = time.monotonic() + 600  # guards a hang only
    while not (log.is_file() and log.read_text().strip()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no training progress"
        time.sleep(0.2)
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == EXIT_PREEMPTED, err
    assert "SIGUSR1" in err
    cks = ckpt_lib.list_checkpoints(tmp_path / "run" / "checkpoints")
    assert len(cks) == 1
    ck = ckpt_lib.load_checkpoint(cks[0])
    assert ck["iteration"] >= 1
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]


def test_evaluate_and_predict_commands(root, tmp_path):
    from protoseg.cli import main

    cfg = RunConfig.from_dict(tiny_config(root, tmp_path, train={"iters": 2, "final_eval": False}))
    train(cfg)
    ckpt = tmp_path / "run" / "checkpoints" / "final.pt"
    assert main(["evaluate", "--checkpoint", str(ckpt), "--quiet"]) == 0
    out = tmp_path / "run" / "eval_val"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "val" and metrics["iteration"] == 2 and 0 <= metrics["mIoU"] <= 1
    assert (out / "per_class_iou.csv").is_file() and (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    images = sorted((root / "images" / "val").iterdir())[:2]
    assert main(["predict", "--checkpoint", str(ckpt), "--out", str(tmp_path / "pred"), *map(str, images)]) == 0
    names = sorted(p.name for p in (tmp_path / "pred").iterdir())
    assert len(names) == 6 and sum(n.endswith("_prototypes.png") for n in names) == 2
    assert main(["evaluate", "--checkpoint", str(tmp_path / "nope.pt")]) == 2
