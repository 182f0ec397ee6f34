"""Training faults, for real on the tiny MiT-B0 run: per-attempt provenance in run_info.json, a
resume on changed data refused (and the recorded override), temp files of a killed writer removed
at the next start (Ctrl-C and SIGTERM: tests/test_bad_input.py), disk full while checkpointing (exit 74),
the workflow's retry guard (only 75 or a killed attempt is retried), files follow the umask."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest
import torch

from engine_helpers import REPO, cli_env, tiny_config, write_config
from protoseg.engine import checkpoint as ckpt_lib
from protoseg.engine import train as train_mod
from protoseg.config import ConfigError, RunConfig
from protoseg.engine.provenance import data_hash
from protoseg.engine.signals import NonFiniteLossError
from protoseg.engine.train import train


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _crash_at(monkeypatch, iteration: int):
    """A loss that becomes NaN at ``iteration``: the run stops there with its checkpoint of iteration 2."""
    real, calls = train_mod.compute_losses, {"n": 0}

    def poisoned(*a, **kw):
        terms = real(*a, **kw)
        calls["n"] += 1
        if calls["n"] == iteration:
            terms["ce"] = terms["ce"] * float("nan")
        return terms

    monkeypatch.setattr(train_mod, "compute_losses", poisoned)


def test_resume_keeps_every_attempt_and_refuses_changed_data(root, tmp_path, monkeypatch):
    cfg = RunConfig.from_dict(tiny_config(root, tmp_path, train={"iters": 4, "final_eval": False}))
    with monkeypatch.context() as m:
        _crash_at(m, 3)
        with pytest.raises(NonFiniteLossError):
            train(cfg)
    run = tmp_path / "run"
    ckdir = run / "checkpoints"
    first = json.loads((run / "run_info.json").read_text())
    assert [a["start_iteration"] for a in first["attempts"]] == [0]
    # a killed writer's partial checkpoint (our temp pattern) and a user's file of another name
    stale = ckdir / ".tmp-iter_00000004.pt.ab12cd34"
    stale.write_bytes(b"partial")
    mine = ckdir / ".tmp-notes.txt"
    mine.write_text("keep")

    # the data changed: a copy of the root whose manifest differs -> refused, naming both hashes
    other = tmp_path / "other_root"
    shutil.copytree(root, other)
    (other / "manifest.json").write_text((other / "manifest.json").read_text() + " ")
    moved = RunConfig.from_dict(tiny_config(other, tmp_path, train={"iters": 4, "final_eval": False}))
    old_hash, new_hash = first["data_hash"], data_hash(other)
    with pytest.raises(ConfigError, match=rf"data changed.*{old_hash}.*{new_hash}.*--allow-data-change"):
        train(moved, resume="auto")
    after = json.loads((run / "run_info.json").read_text())
    assert after == first  # nothing recorded, nothing overwritten
    assert not stale.exists() and mine.read_text() == "keep"

    # resume on the original data: a second record; its start, host and commit
    train(cfg, resume="auto")
    info = json.loads((run / "run_info.json").read_text())
    assert [a["start_iteration"] for a in info["attempts"]] == [0, 2]
    assert info["attempts"][0] == first["attempts"][0]
    for a in info["attempts"]:
        assert {"git_commit", "data_hash", "host", "started"} <= set(a)
    assert info["data_hash"] == old_hash and "finished" in info

    # the explicit override is accepted and recorded
    ck = ckpt_lib.load_checkpoint(ckdir / "final.pt")
    assert ck["data_hash"] == old_hash
    train(moved, resume=str(ckdir / "iter_00000002.pt"), allow_data_change=True)
    info = json.loads((run / "run_info.json").read_text())
    assert info["attempts"][-1]["allow_data_change"] == {"from": old_hash, "to": new_hash}
    assert info["data_hashes"] == [old_hash, new_hash] and len(info["attempts"]) == 3


def test_files_follow_the_umask(root, tmp_path):
    old = os.umask(0o022)
    try:
        train(RunConfig.from_dict(tiny_config(root, tmp_path, train={"iters": 2})))
    finally:
        os.umask(old)
    run = tmp_path / "run"
    for rel in ("config.yaml", "run_info.json", "metrics.json", "checkpoints/final.pt",
                "checkpoints/../train_log.jsonl"):
        assert stat.S_IMODE((run / rel).stat().st_mode) == 0o644, rel


def _has_userns() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-rm", "true"], capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _has_userns(), reason="needs unshare -rm (a private mount of a tiny tmpfs)")
def test_disk_full_while_checkpointing_is_one_line_exit_74(root, tmp_path):
    """A REAL full disk: the checkpoint folder is a 256 KiB tmpfs in a private mount namespace."""
    cfg = tiny_config(root, tmp_path, train={"iters": 4, "ckpt_interval": 2})
    path = write_config(cfg, tmp_path / "c.yaml")
    ckdir = tmp_path / "run" / "checkpoints"
    ckdir.mkdir(parents=True)
    script = (f"mount -t tmpfs -o size=256k tmpfs '{ckdir}' && '{sys.executable}' -m protoseg.cli train "
              f"--config '{path}'; rc=$?; ls -a '{ckdir}' >&2; exit $rc")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=REPO, env=cli_env(), capture_output=True,
                          text=True, timeout=300)
    err = proc.stderr
    assert proc.returncode == 74, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "iter_00000002.pt" in lines[0] and "ENOSPC" in lines[0], err
    assert "Traceback" not in err and ".tmp-" not in err  # the partial temp file was removed


def test_workflow_retries_only_preemption(tmp_path, capsys):
    """`protoseg train --attempt N` (the train rule's command on the run's run.yaml): attempt 2 after a
    deterministic failure (exit 2) stops at once with the same status; after exit 75 or no record (a
    killed attempt) it runs."""
    from protoseg.cli import main
    from protoseg.pipeline.experiments import build_plan

    runs = tmp_path / "runs"
    key = next(iter(build_plan(scale="mini", seeds=[0], runs_dir=str(runs)).runs))
    config = runs / "mini" / key / "run.yaml"
    assert main(["experiments", "config", key, "--runs-dir", str(runs), "--out", str(config)]) == 0
    common = ["train", "--config", str(config), "--resume", "auto", "data.root=/nonexistent/root", "run.seed=0",
              f"run.name={key}/s0"]
    # attempt 1 fails deterministically: its data root does not exist (a user error)
    assert main([*common, "--attempt", "1"]) == 2
    record = runs / "mini" / key / "s0" / "last_exit.json"
    assert json.loads(record.read_text()) == {"attempt": 1, "exit": 2}
    capsys.readouterr()
    assert main([*common, "--attempt", "2"]) == 2
    err = capsys.readouterr().err
    assert "not retrying" in err and "exited with status 2" in err
    # after a preemption (75) the retry runs (and here fails on its own, recording attempt 3)
    record.write_text(json.dumps({"attempt": 2, "exit": 75}))
    assert main([*common, "--attempt", "3"]) == 2
    assert "not retrying" not in capsys.readouterr().err
    assert json.loads(record.read_text()) == {"attempt": 3, "exit": 2}
    record.unlink()  # a killed attempt leaves no record: retried
    assert main([*common, "--attempt", "4"]) == 2
    assert "not retrying" not in capsys.readouterr().err
