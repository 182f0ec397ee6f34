"""End to end on the miniature twins: make-mini -> prepare -> check, idempotence, atomicity,
label mappings against the official encodings, ADE20K-Full ranking and top-N sets."""
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from protoseg.cli import main
from protoseg.data.check import check_root
from protoseg.data.classes import read_table
from protoseg.data.errors import DataError
from protoseg.data.mini import TWINS, make_mini
from protoseg.data.prepare import prepare
from protoseg.data.mini import ADE20K_KEY0, ADE_FULL_KEY0, CITYSCAPES_KEY0, COCO_KEY0, PRETRAIN_KEY0
from protoseg.data.synth import NUM_MODES, appearance, cell_of

SPLITS = {"ade20k": {"train": 2000, "val": 300}, "ade20k-full": {"train": 2000, "val": 600},
          "cityscapes": {"train": 2000, "val": 300}, "coco-stuff-10k": {"train": 2000, "test": 300},
          "coco-stuff-164k": {"train": 400, "val": 100}}
NUM_CLASSES = {"ade20k": 150, "ade20k-full": 847, "cityscapes": 19, "coco-stuff-10k": 171,
               "coco-stuff-164k": 171}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Every twin made and prepared once: {dataset: (src, dst, meta)}."""
    out = {}
    for name in TWINS:
        base = tmp_path_factory.mktemp(name)
        make_mini(name, base / "src", seed=0)
        meta = prepare(name, base / "src", base / "dst", workers=2, progress=False)
        out[name] = (base / "src", base / "dst", meta)
    return out


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", TWINS)
def test_prepare_and_check(prepared, name):
    src, dst, meta = prepared[name]
    assert meta["complete"] and meta["splits"] == SPLITS[name]
    assert meta["num_classes"] == NUM_CLASSES[name] == len(meta["classes"])
    report = check_root(dst, dataset=name, workers=2, checksums=True)
    assert report["samples_checked"] == sum(SPLITS[name].values())
    for split, n in SPLITS[name].items():
        assert len(list((dst / "images" / split).iterdir())) == n
        assert len(list((dst / "labels" / split).iterdir())) == n
        assert len((dst / "splits" / f"{split}.txt").read_text().split()) == n
    manifest = json.loads((dst / "manifest.json").read_text())
    label_sets = 5 if name == "ade20k-full" else 1  # labels/ and labels_top{150,300,500,700}/
    assert len(manifest["files"]) == (1 + label_sets) * sum(SPLITS[name].values())
    # labels: train ids, ignore, and every prepared label in range
    ignore = meta["ignore_index"]
    seen = set()
    for p in (dst / "labels" / "train").iterdir():
        seen |= set(np.unique(np.array(Image.open(p))).tolist())
    assert max(seen - {ignore}) < NUM_CLASSES[name]
    assert ignore in seen  # every twin has unlabelled pixels
    assert len(seen - {ignore}) >= min(NUM_CLASSES[name], 19) - 1


@pytest.mark.slow
def test_twins_are_deterministic_by_seed(tmp_path):
    for name in ("ade20k", "cityscapes"):
        make_mini(name, tmp_path / f"{name}-a", seed=3)
        make_mini(name, tmp_path / f"{name}-b", seed=3)
        make_mini(name, tmp_path / f"{name}-c", seed=4)
        a, b, c = (tree_digest(tmp_path / f"{name}-{k}") for k in "abc")
        assert a == b and a != c


def test_every_class_has_three_distinct_cells_and_the_847_vocabulary_is_confusable():
    twins = {"ade20k": range(ADE20K_KEY0 + 1, ADE20K_KEY0 + 151), "coco": range(COCO_KEY0, COCO_KEY0 + 171),
             "cityscapes": range(CITYSCAPES_KEY0, CITYSCAPES_KEY0 + 34),
             "pretrain": range(PRETRAIN_KEY0 + 1, PRETRAIN_KEY0 + 151)}
    cells = {}
    for name, keys in twins.items():
        cs = [cell_of(k, m) for k in keys for m in range(NUM_MODES)]
        assert len(set(cs)) == len(cs), name  # no two modes of one twin share an alphabet cell
        looks = {(appearance(k, m).colour, appearance(k, m).texture) for k in keys for m in range(NUM_MODES)}
        assert len(looks) == len(cs), name  # distinct cells look different (colour or texture)
        cells[name] = set(cs)
    # the pre-training classes use cells no 19-, 150- or 171-class twin uses
    assert not cells["pretrain"] & (cells["ade20k"] | cells["coco"] | cells["cityscapes"])
    full = [cell_of(ADE_FULL_KEY0 + r, m) for r in range(847) for m in range(NUM_MODES)]
    assert len(set(full[:150 * NUM_MODES])) == 150 * NUM_MODES  # top-150 owns its cells
    assert len(set(full)) < len(full)  # the 847 classes share cells: confusable by construction


def _original_values(name, src, split, stem):
    if name == "ade20k":
        sub = {"train": "training", "val": "validation"}[split]
        return np.array(Image.open(src / "annotations" / sub / f"{stem}.png"))
    if name == "cityscapes":
        return np.array(Image.open(next(src.glob(f"gtFine/{split}/*/{stem}_gtFine_labelIds.png"))))
    if name == "coco-stuff-10k":
        return scipy.io.loadmat(src / "annotations" / f"{stem}.mat")["S"]
    if name == "coco-stuff-164k":
        sub = {"train": "train2017", "val": "val2017"}[split]
        return np.array(Image.open(src / "annotations" / sub / f"{stem}.png"))
    raise ValueError(name)


def _expected_map(name) -> dict[int, int]:
    if name == "ade20k":
        return {0: 255, **{int(r["label_value"]): int(r["train_id"]) for r in read_table("ade20k_150.tsv")}}
    if name == "cityscapes":
        from cityscapesscripts.helpers.labels import id2label

        return {i: (lab.trainId if 0 <= lab.trainId < 255 else 255) for i, lab in id2label.items() if i >= 0}
    rows = read_table("coco_stuff_171.tsv")
    col = "label_value_10k" if name.endswith("10k") else "label_value_164k"
    m = {int(r[col]): int(r["train_id"]) for r in rows}
    return m | ({0: 255} if name.endswith("10k") else {255: 255})


@pytest.mark.parametrize("name", ["ade20k", "cityscapes", "coco-stuff-10k", "coco-stuff-164k"])
def test_label_mapping_against_official_values(prepared, name):
    src, dst, meta = prepared[name]
    mapping = _expected_map(name)
    n_values = set()
    for split in meta["splits"]:
        for stem in (dst / "splits" / f"{split}.txt").read_text().split()[:6]:
            orig = _original_values(name, src, split, stem)
            ours = np.array(Image.open(dst / "labels" / split / f"{stem}.png"))
            assert ours.shape == orig.shape
            for v in np.unique(orig):
                n_values.add(int(v))
                assert (ours[orig == v] == mapping.get(int(v), 255)).all(), (stem, v)
    assert len(n_values) > 10


def test_cityscapes_polygons_render_to_label_ids(prepared):
    """The twin's polygons.json re-rendered by cityscapesscripts equals its labelIds.png."""
    from cityscapesscripts.helpers.annotation import Annotation
    from cityscapesscripts.preparation.json2labelImg import createLabelImage

    src = prepared["cityscapes"][0]
    files = sorted(src.glob("gtFine/*/*/*_gtFine_polygons.json"))[:5]
    assert files
    for f in files:
        ann = Annotation()
        ann.fromJsonFile(str(f))
        rendered = np.array(createLabelImage(ann, "ids"))
        label_ids = np.array(Image.open(str(f).replace("_polygons.json", "_labelIds.png")))
        assert (rendered == label_ids).mean() > 0.999


def test_ade20k_full_twin_long_tail_and_top_n(prepared):
    src, dst, meta = prepared["ade20k-full"]
    lines = (dst / "ranking.tsv").read_text().splitlines()
    header, rows = lines[0].split("\t"), [ln.split("\t") for ln in lines[1:]]
    assert header == ["rank", "name", "ade_id", "train_id", "pixel_count", "image_count", "list_image_count"]
    assert len(rows) == 847 and [int(r[0]) for r in rows] == list(range(1, 848))
    pixels = np.array([int(r[4]) for r in rows])
    assert (np.diff(pixels) <= 0).all()  # ranked by descending pixel count
    present = int((pixels > 0).sum())
    assert present >= 300 and meta["ranking"]["classes_present_in_train"] == present
    share_top30 = pixels[:30].sum() / pixels.sum()
    assert share_top30 > 0.4 and pixels[0] > 50 * pixels[present - 1]  # long-tailed
    # recount from the prepared labels: the ranking is what the labels say
    counts = np.zeros(847, dtype=np.int64)
    for p in (dst / "labels" / "train").iterdir():
        v = np.array(Image.open(p)).astype(np.int64)
        counts += np.bincount(v[v != 65535], minlength=847)
    assert (counts[[int(r[3]) for r in rows]] == pixels).all()
    # top-N sets: the N best-ranked classes, 847-list order, ids 0..N-1, the rest ignored
    for n in (150, 300, 500, 700):
        kept = sorted(int(r[3]) for r in rows[:n])
        assert meta["label_sets"][str(n)]["full_train_ids"] == kept
        lut = np.full(65536, 65535, dtype=np.int64)
        lut[kept] = np.arange(n)
        for stem in (dst / "splits" / "val.txt").read_text().split()[:3]:
            full = np.array(Image.open(dst / "labels" / "val" / f"{stem}.png")).astype(np.int64)
            top = np.array(Image.open(dst / f"labels_top{n}" / "val" / f"{stem}.png")).astype(np.int64)
            assert (top == lut[full]).all()
    # MaskFormer's resize: the one large image is shrunk to short side 512, label alike
    img = Image.open(dst / "images" / "train" / "ADE_train_00000001.jpg")
    assert img.size == (round(600 / 520 * 512), 512)
    assert Image.open(dst / "labels" / "train" / "ADE_train_00000001.png").size == img.size
    # ids outside the 847 list are ignored (the twin paints some)
    from protoseg.data.formats.ade20k_full import LUT, decode_class_mask

    stem = "ADE_train_00000002"
    seg = next(src.glob(f"images/ADE/training/*/*/{stem}_seg.png"))
    ids = decode_class_mask(np.array(Image.open(seg)))
    ours = np.array(Image.open(dst / "labels" / "train" / f"{stem}.png"))
    assert (ours == LUT[ids]).all()


def test_rerun_skips_and_repairs(tmp_path):
    make_mini("ade20k", tmp_path / "src", seed=1, n_train=400, n_val=100)
    dst = tmp_path / "dst"
    first = prepare("ade20k", tmp_path / "src", dst, workers=2, progress=False)
    assert first["run"]["files_converted"] == 500
    mtimes = {p: p.stat().st_mtime_ns for p in (dst / "labels").rglob("*.png")}
    again = prepare("ade20k", tmp_path / "src", dst, workers=2, progress=False)
    assert again["run"]["files_converted"] == 0 and again["run"]["files_skipped"] == 500
    assert mtimes == {p: p.stat().st_mtime_ns for p in (dst / "labels").rglob("*.png")}
    # a damaged output and a stale temp file: only that pair is redone, the temp file removed
    victim = dst / "labels" / "train" / "ADE_train_00000003.png"
    victim.write_bytes(victim.read_bytes()[:50])
    (dst / "labels" / "train" / ".tmp-x.png.k2j_4x9a").write_bytes(b"partial")
    with pytest.raises(DataError):
        check_root(dst, checksums=True)
    third = prepare("ade20k", tmp_path / "src", dst, workers=1, progress=False)
    assert third["run"]["files_converted"] == 1
    assert not list(dst.rglob(".tmp-*"))
    check_root(dst, checksums=True)
    # a changed source file is re-converted
    ann = tmp_path / "src" / "annotations" / "validation" / "ADE_val_00000002.png"
    arr = np.array(Image.open(ann))
    arr[0, 0] = 5
    Image.fromarray(arr).save(ann)
    fourth = prepare("ade20k", tmp_path / "src", dst, workers=1, progress=False)
    assert fourth["run"]["files_converted"] == 1
    assert np.array(Image.open(dst / "labels" / "val" / "ADE_val_00000002.png"))[0, 0] == 4


def test_failed_run_leaves_no_complete_root(tmp_path):
    make_mini("ade20k", tmp_path / "src", seed=2)
    dst = tmp_path / "dst"
    prepare("ade20k", tmp_path / "src", dst, workers=1, progress=False)
    assert (dst / "meta.json").is_file()
    img = tmp_path / "src" / "images" / "training" / "ADE_train_00000005.jpg"
    img.write_bytes(img.read_bytes()[: len(img.read_bytes()) // 3])  # truncated
    with pytest.raises(DataError, match="ADE_train_00000005.jpg.*truncated"):
        prepare("ade20k", tmp_path / "src", dst, workers=2, progress=False)
    assert not (dst / "meta.json").exists()  # the old complete marker is gone too
    with pytest.raises(DataError, match="meta.json missing"):
        check_root(dst)
    from protoseg.data.dataset import SegmentationDataset

    with pytest.raises(DataError, match="meta.json missing"):
        SegmentationDataset(dst, "train", lambda *a: {})


def test_cli_make_mini_prepare_check(tmp_path, capsys):
    assert main(["make-mini", "coco-stuff-164k", "--dst", str(tmp_path / "src"), "--seed", "5"]) == 0
    assert main(["prepare", "coco-stuff-164k", "--src", str(tmp_path / "src"), "--dst", str(tmp_path / "dst"),
                 "--workers", "2", "--quiet"]) == 0
    assert main(["prepare", "coco-stuff-164k", "--check", str(tmp_path / "dst"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert '"samples_checked": 500' in out
    assert main(["make-mini", "coco-stuff-164k", "--dst", str(tmp_path / "src")]) == 2  # not empty
    assert "not empty" in capsys.readouterr().err
    assert main(["prepare", "ade20k", "--check", str(tmp_path / "dst"), "--quiet"]) == 2
    assert "not 'ade20k'" in capsys.readouterr().err
