"""`prepare` deletes only what its own manifest lists; a foreign non-empty --dst is refused (--force
adopts it and keeps the user's files); outputs get the umask's mode; only our temp names are removed."""
from __future__ import annotations

import json
import os
import stat

import pytest

from protoseg.cli import main
from protoseg.data.errors import DataError
from protoseg.data.mini import make_mini
from protoseg.data.prepare import prepare


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    s = tmp_path_factory.mktemp("ade") / "src"
    make_mini("ade20k", s, seed=3)
    return s


def _user_files(dst):
    (dst / "images" / "train").mkdir(parents=True)
    photo = dst / "images" / "train" / "my_holiday.jpg"
    photo.write_bytes(b"\xff\xd8 the user's photo")
    note = dst / "images" / "train" / "notes.txt"
    note.write_text("mine")
    return {photo: photo.read_bytes(), note: note.read_bytes()}


def test_foreign_dst_is_refused_and_nothing_is_touched(src, tmp_path, capsys):
    dst = tmp_path / "dst"
    mine = _user_files(dst)
    code = main(["prepare", "ade20k", "--src", str(src), "--dst", str(dst), "--quiet", "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert str(dst) in err and "not empty" in err and "--force" in err and "Traceback" not in err
    assert {p: p.read_bytes() for p in mine} == mine
    assert sorted(p.name for p in dst.rglob("*")) == ["images", "my_holiday.jpg", "notes.txt", "train"]


def test_force_adopts_and_keeps_user_files_deleting_only_our_stale_outputs(src, tmp_path):
    dst = tmp_path / "dst"
    mine = _user_files(dst)
    meta = prepare("ade20k", src, dst, workers=1, progress=False, force=True)
    assert meta["run"]["stale_files_removed"] == 0
    assert {p: p.read_bytes() for p in mine} == mine
    # the source loses a pair: its two outputs (ours, in the manifest) go, the user's files stay
    (src / "images" / "training" / "ADE_train_00000024.jpg").rename(tmp_path / "a.jpg")
    (src / "annotations" / "training" / "ADE_train_00000024.png").rename(tmp_path / "a.png")
    try:
        again = prepare("ade20k", src, dst, workers=1, progress=False)  # ours now: no --force needed
    finally:
        (tmp_path / "a.jpg").rename(src / "images" / "training" / "ADE_train_00000024.jpg")
        (tmp_path / "a.png").rename(src / "annotations" / "training" / "ADE_train_00000024.png")
    assert again["run"]["stale_files_removed"] == 2
    assert not (dst / "images" / "train" / "ADE_train_00000024.jpg").exists()
    assert {p: p.read_bytes() for p in mine} == mine
    files = json.loads((dst / "manifest.json").read_text())["files"]
    assert "images/train/my_holiday.jpg" not in files and "images/train/ADE_train_00000024.jpg" not in files


def test_outputs_follow_the_umask_and_only_our_temp_names_are_removed(src, tmp_path):
    dst = tmp_path / "dst"
    old = os.umask(0o027)
    try:
        prepare("ade20k", src, dst, workers=1, progress=False)
    finally:
        os.umask(old)
    for rel in ("meta.json", "manifest.json", "splits/train.txt", "labels/train/ADE_train_00000001.png",
                "images/train/ADE_train_00000001.jpg"):
        assert stat.S_IMODE((dst / rel).stat().st_mode) == 0o640, rel
    ours = dst / "labels" / "train" / ".tmp-ADE_train_00000001.png.k2j_4x9a"
    ours.write_bytes(b"partial")
    keep = dst / "labels" / "train" / ".tmp-notes"  # not our pattern (no random part)
    keep.write_bytes(b"user")
    prepare("ade20k", src, dst, workers=1, progress=False)
    assert not ours.exists() and keep.read_bytes() == b"user"


def test_foreign_manifest_is_refused(src, tmp_path):
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "manifest.json").write_text('["not", "ours"]')
    with pytest.raises(DataError, match="manifest.json: not a manifest of protoseg prepare"):
        prepare("ade20k", src, dst, workers=1, progress=False)
    assert (dst / "manifest.json").read_text() == '["not", "ours"]'


def _has_userns() -> bool:
    import shutil
    import subprocess

    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-rm", "true"], capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _has_userns(), reason="needs unshare -rm (a private mount of a tiny tmpfs)")
@pytest.mark.parametrize("opts,word", [("size=64k", "ENOSPC"), ("ro", "EROFS")])
def test_environment_faults_are_exit_74_naming_the_file(src, tmp_path, opts, word):
    """A REAL full (or read-only) disk: --dst is a 64 KiB (read-only) tmpfs in a private mount
    namespace."""
    import subprocess
    import sys

    from engine_helpers import REPO, cli_env

    dst = tmp_path / "dst"
    dst.mkdir()
    script = (f"mount -t tmpfs -o {opts} tmpfs '{dst}' && '{sys.executable}' -m protoseg.cli prepare ade20k "
              f"--src '{src}' --dst '{dst}' --workers 2 --quiet")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=REPO, env=cli_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 74, proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert line.startswith("error: ") and str(dst) in line and word in line
