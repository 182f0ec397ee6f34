"""record_lock (the Snakefile's onsuccess): real DVC in a real git repository, a one-stage pipeline."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from protoseg.pipeline.dvc import complete_stages, record_lock

BIN = Path(sys.executable).parent


@pytest.fixture()
def repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    for k in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(k, "t")
    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run([BIN / "dvc", "init", "-q"], check=True)
    Path("dvc.yaml").write_text("stages:\n  copy:\n    cmd: cp in.txt out.txt\n    deps: [in.txt]\n    outs: [out.txt]\n"
                                "  train_x_s0:\n    cmd: 'true'\n    outs: [run]\n")
    return tmp_path


def _status(stage):
    out = subprocess.run([BIN / "dvc", "status", "--json", stage], capture_output=True, text=True, check=True)
    return json.loads(out.stdout or "{}")


def test_record_lock_records_what_was_built_and_never_hides_a_changed_input(repo, capsys):
    Path("in.txt").write_text("a\n")
    Path("out.txt").write_text("a\n")  # built outside DVC (by Snakemake)
    Path("run").mkdir()  # a run folder without metrics.json: training not finished
    assert complete_stages() == ["copy"]
    assert record_lock(dvc=str(BIN / "dvc")) == 0
    assert _status("copy") == {}
    assert "train_x_s0" not in Path("dvc.lock").read_text()
    repro = subprocess.run([BIN / "dvc", "repro", "copy"], capture_output=True, text=True, check=True).stdout
    assert "didn't change, skipping" in repro

    Path("in.txt").write_text("b\n")  # the input changed, nothing rebuilt the output
    record_lock(dvc=str(BIN / "dvc"))
    assert "copy not recorded: its dependencies changed" in capsys.readouterr().err
    assert _status("copy") == {"copy": [{"changed deps": {"in.txt": "modified"}}]}

    Path("out.txt").write_text("b\n")  # rebuilt (by Snakemake): recorded
    Path("run/metrics.json").write_text("{}")
    record_lock(dvc=str(BIN / "dvc"))
    assert "recorded 2 stage(s)" in capsys.readouterr().err
    assert _status("copy") == {} and _status("train_x_s0") == {}


def test_record_lock_without_a_dvc_repository_only_notes_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert record_lock() == 0
    assert "no DVC repository" in capsys.readouterr().err


def test_record_lock_since_records_only_the_stages_written_after_it(repo, capsys):
    """The Snakefile passes its start: stages complete before it are left as they are (no hashing, no
    dvc status), those written after it are recorded."""
    Path("in.txt").write_text("a\n")
    Path("out.txt").write_text("a\n")
    Path("run").mkdir()
    Path("run/metrics.json").write_text("{}")
    old = 1_000_000_000  # built by an earlier invocation
    for p in ("out.txt", "run/metrics.json"):
        os.utime(p, (old, old))
    assert record_lock(dvc=str(BIN / "dvc"), since=old + 3600) == 0
    assert "nothing built by this run to record" in capsys.readouterr().err
    assert not Path("dvc.lock").exists()
    os.utime("run/metrics.json")  # training finished in this invocation
    assert record_lock(dvc=str(BIN / "dvc"), since=old + 3600) == 0
    assert "recorded 1 stage(s) built by Snakemake in" in capsys.readouterr().err
    lock = Path("dvc.lock").read_text()
    assert "train_x_s0" in lock and "copy" not in lock
    assert _status("train_x_s0") == {}
    assert complete_stages(since=old + 3600) == ["train_x_s0"]


def test_one_session_commit_writes_the_lock_dvc_commit_writes(repo):
    """protoseg.pipeline.dvc_commit (the record step's one DVC session) gives byte for byte the dvc.lock of
    `dvc commit -f` on the same stages."""
    Path("in.txt").write_text("a\n")
    Path("out.txt").write_text("a\n")
    Path("run").mkdir()
    Path("run/metrics.json").write_text("{}")
    subprocess.run([sys.executable, "-m", "protoseg.pipeline.dvc_commit", "copy", "train_x_s0"], check=True)
    ours = Path("dvc.lock").read_bytes()
    Path("dvc.lock").unlink()
    subprocess.run([BIN / "dvc", "commit", "-f", "-q", "copy", "train_x_s0"], check=True)
    assert Path("dvc.lock").read_bytes() == ours
    assert _status("copy") == {} and _status("train_x_s0") == {}


def test_the_environment_carries_the_dvc_dry_run_fix():
    """scripts/install.sh writes protoseg_dvc_compat.pth (protoseg/_dvc_compat.py): DVC's run-cache check
    answers 'not cached' for a dependency not made yet instead of failing `dvc repro --dry`."""
    code = ("import dvc.stage.cache as c; from types import SimpleNamespace as N\n"
            "class Dep:\n protocol = 'local'; def_path = 'x'\n def get_hash(self): raise FileNotFoundError('x')\n"
            "stage = N(is_callback=False, always_changed=False, cmd='true', deps=[Dep()], outs=[1])\n"
            "print(getattr(c._can_hash, '_protoseg_fixed', False), c._can_hash(stage))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False"], ("run: python -c 'from protoseg._dvc_compat import write_pth; write_pth()'", out)
