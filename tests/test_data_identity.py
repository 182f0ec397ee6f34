"""A prepared root's identity: content-addressed (issue 22: the same twin prepared in two folders at two
times has one data hash and the same bytes, a resume after moving the root is accepted) and knowing
what it holds (issue 19: a config of another dataset, vocabulary or ignore value is refused before any
model is built with one `error:` line; a label outside [0, C) plus ignore is a DataError naming the file)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine_helpers import run_cli, tiny_config, write_config
from protoseg.data.dataset import SegmentationDataset
from protoseg.data.errors import DataError
from protoseg.data.identity import check_labels, check_root_identity, read_identity
from protoseg.data.mini import make_mini
from protoseg.data.prepare import prepare
from protoseg.data.specs import get_spec
from protoseg.engine.provenance import data_hash

SMALL = {"n_train": 4, "n_val": 2}


def _tree(root: Path) -> dict[str, str]:
    """Every file of a root (what DVC hashes): relative path -> sha256 of its bytes."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    base = tmp_path_factory.mktemp("city")
    make_mini("cityscapes", base / "src", seed=0, **SMALL)
    prepare("cityscapes", base / "src", base / "dst", workers=1, progress=False)
    return base


def test_same_twin_in_two_folders_at_two_times_has_one_hash(city, tmp_path):
    other_src = tmp_path / "elsewhere" / "raw"
    make_mini("cityscapes", other_src, seed=0, **SMALL)
    for p in other_src.rglob("*"):  # written "a day later"
        if p.is_file():
            st = p.stat()
            os.utime(p, ns=(st.st_atime_ns + 86_400 * 10**9, st.st_mtime_ns + 86_400 * 10**9))
    meta = prepare("cityscapes", other_src, tmp_path / "elsewhere" / "prepared", workers=2, progress=False)
    assert meta["source"] == str(other_src.resolve())  # reported, never written into the root
    a, b = city / "dst", tmp_path / "elsewhere" / "prepared"
    assert data_hash(a) == data_hash(b) != "unknown"
    assert _tree(a) == _tree(b)  # manifest, meta.json, every file: byte for byte
    assert str(city) not in (a / "manifest.json").read_text() + (a / "meta.json").read_text()


def test_touched_sources_rerun_skips_everything_and_keeps_the_hash(city, tmp_path):
    src, root = tmp_path / "src", tmp_path / "root"
    shutil.copytree(city / "src", src)
    prepare("cityscapes", src, root, workers=1, progress=False)
    before, tree = data_hash(root), _tree(root)
    for p in src.rglob("*"):
        if p.is_file():
            os.utime(p)  # touched: new mtime, same bytes
    again = prepare("cityscapes", src, root, workers=1, progress=False)
    assert again["run"]["files_converted"] == 0 and again["run"]["files_skipped"] == 6  # image/label pairs
    assert data_hash(root) == before and _tree(root) == tree


def test_resume_after_moving_the_root_is_accepted(city, tmp_path):
    from protoseg.config import ConfigError
    from protoseg.engine.resume import check_resume_data

    root = tmp_path / "old" / "prepared"
    shutil.copytree(city / "dst", root)
    ck = {"data_hash": data_hash(root)}
    moved = tmp_path / "new-disk" / "data"
    moved.parent.mkdir()
    shutil.move(str(root), moved)
    assert check_resume_data(ck, tmp_path / "run", str(moved), Path("ck.pt"), allow=False) is None
    (moved / "labels" / "val").joinpath(sorted(os.listdir(moved / "labels" / "val"))[0]).write_bytes(b"x")
    prepare_root_changed = tmp_path / "changed"
    shutil.copytree(moved, prepare_root_changed)
    manifest = json.loads((prepare_root_changed / "manifest.json").read_text())
    first = sorted(manifest["files"])[0]
    manifest["files"][first]["sha256"] = "0" * 64  # other bytes: another hash, still refused
    (prepare_root_changed / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="the data changed"):
        check_resume_data(ck, tmp_path / "run", str(prepare_root_changed), Path("ck.pt"), allow=False)


def test_manifest_records_what_the_root_holds(city):
    ident, recorded = read_identity(city / "dst")
    assert recorded
    assert ident == {"dataset": "cityscapes", "splits": ["train", "val"], "num_classes": 19,
                     "label_sets": {"19": {"dir": "labels", "num_classes": 19}}, "ignore_index": 255,
                     "label_range": [0, 18]}


def test_ade20k_full_root_records_its_top_n_vocabularies(tmp_path):
    make_mini("ade20k-full", tmp_path / "src", seed=0, n_train=6, n_val=2)
    prepare("ade20k-full", tmp_path / "src", tmp_path / "dst", workers=1, progress=False)
    ident, _ = read_identity(tmp_path / "dst")
    sets = {v["dir"]: v["num_classes"] for v in ident["label_sets"].values()}
    assert sets["labels"] == 847 and ident["ignore_index"] == 65535
    assert all(sets[f"labels_top{n}"] == n for n in (150, 300, 500))
    check_root_identity(tmp_path / "dst", dataset="ade20k-full", num_classes=300, label_dir="labels_top300",
                        ignore_index=65535)
    with pytest.raises(DataError, match="no 200-class label set in labels_top200/"):
        check_root_identity(tmp_path / "dst", dataset="ade20k-full", num_classes=200,
                            label_dir="labels_top200", ignore_index=65535)


@pytest.fixture(scope="module")
def ade(tmp_path_factory):
    base = tmp_path_factory.mktemp("ade")
    make_mini("ade20k", base / "src", seed=0, n_train=4, n_val=2)
    prepare("ade20k", base / "src", base / "dst", workers=1, progress=False)
    return base / "dst"


@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
def test_a_config_of_another_dataset_is_refused_before_any_model(ade, city, tmp_path, command):
    """A Cityscapes config on a prepared ADE20K root: exit 2, one error line naming the root, what it
    holds and what the config expects; nothing written."""
    out = tmp_path / "runs"
    if command == "train":
        cfg = write_config(tiny_config(ade, out), tmp_path / "run.yaml")
        proc = run_cli(["train", "--config", str(cfg)], timeout=1500)  # guards a hang only
    else:  # a checkpoint of a Cityscapes run, evaluated (or predicting) on the ADE20K root
        import torch

        from protoseg.engine.checkpoint import FORMAT_VERSION

        ck = tmp_path / "ck.pt"  # the model is never built: its weights are not needed
        torch.save({"format": FORMAT_VERSION, "config": tiny_config(city / "dst", out), "model": {},
                    "iteration": 0}, ck)
        if command == "evaluate":
            proc = run_cli(["evaluate", "--checkpoint", str(ck), f"data.root={ade}", "--out", str(out / "eval")],
                           timeout=1500)
        else:
            image = next((ade / "images" / "val").iterdir())
            proc = run_cli(["predict", "--checkpoint", str(ck), "--set", f"data.root={ade}", "--out",
                            str(out / "pred"), str(image)], timeout=1500)
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"data.root={ade} holds 'ade20k'" in errors[0] and "expects 'cityscapes' with 19 classes" in errors[0]
    assert not out.exists()


def test_an_old_root_without_identity_is_checked_from_meta_with_a_note(city, tmp_path):
    root = tmp_path / "old"
    shutil.copytree(city / "dst", root)
    manifest = json.loads((root / "manifest.json").read_text())
    del manifest["identity"]
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.warns(RuntimeWarning, match=r"protoseg prepare cityscapes --check"):
        check_root_identity(root, dataset="cityscapes", num_classes=19, label_dir="labels", ignore_index=255)
    with pytest.raises(DataError, match="holds 'cityscapes'.*expects 'ade20k'"):
        check_root_identity(root, dataset="ade20k", num_classes=150, label_dir="labels", ignore_index=255)


def test_a_label_outside_the_classes_is_a_data_error_naming_the_file(city, tmp_path):
    root = tmp_path / "bad"
    shutil.copytree(city / "dst", root)
    stem = (root / "splits" / "train.txt").read_text().split()[1]
    label_path = root / "labels" / "train" / f"{stem}.png"
    arr = np.array(Image.open(label_path))
    arr[0, :3] = 64  # not a Cityscapes train id, not the ignore value
    Image.fromarray(arr).save(label_path)
    ds = SegmentationDataset.from_spec(root, get_spec("cityscapes", mini=True), train=True)
    ds.load(0)
    with pytest.raises(DataError, match=rf"{stem}\.png: label values \[64\] are outside \[0, 19\)"):
        ds.load(1)
    check_labels(np.array([[0, 18, 255]]), 19, 255)
    with pytest.raises(DataError, match=r"b\.png: label values \[-1, 19\]"):
        check_labels(np.array([[[0, 0]], [[-1, 19]]]), 19, 255, ["a.png", "b.png"])


def test_a_bad_label_in_a_loader_worker_is_the_workers_one_line(city, tmp_path):
    """torch re-raises a worker's DataError with the worker's traceback in its message: the error that
    reaches the CLI is the worker's one line."""
    from torch.utils.data import DataLoader

    root = tmp_path / "bad"
    shutil.copytree(city / "dst", root)
    stem = (root / "splits" / "val.txt").read_text().split()[0]
    label_path = root / "labels" / "val" / f"{stem}.png"
    arr = np.array(Image.open(label_path))
    arr[:2, :2] = 200
    Image.fromarray(arr).save(label_path)
    ds = SegmentationDataset.from_spec(root, get_spec("cityscapes", mini=True), train=False)
    with pytest.raises(DataError) as err:
        next(iter(DataLoader(ds, batch_size=1, num_workers=1, collate_fn=lambda b: b)))
    assert str(err.value).startswith(f"{label_path}: label values [200]") and "\n" not in str(err.value)
