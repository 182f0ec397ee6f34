"""Bad input: each case gives a DataError naming the file and what was expected, and no root that
looks complete."""
import shutil

import numpy as np
import pytest
import scipy.io
from PIL import Image

from protoseg.cli import main
from protoseg.data.errors import DataError
from protoseg.data.mini import make_mini
from protoseg.data.prepare import prepare


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    base = tmp_path_factory.mktemp("pristine")
    for name in ("ade20k", "cityscapes", "coco-stuff-10k", "ade20k-full"):
        make_mini(name, base / name, seed=0)
    return base


@pytest.fixture
def twin(pristine, tmp_path):
    def copy(name):
        shutil.copytree(pristine / name, tmp_path / name)
        return tmp_path / name
    return copy


def _fails(name, src, dst, pattern):
    with pytest.raises(DataError, match=pattern) as info:
        prepare(name, src, dst, workers=2, progress=False)
    assert not (dst / "meta.json").exists()
    return str(info.value)


def test_corrupt_image(twin, tmp_path):
    src = twin("ade20k")
    bad = src / "images" / "validation" / "ADE_val_00000003.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a jpeg")
    msg = _fails("ade20k", src, tmp_path / "dst", "ADE_val_00000003.jpg")
    assert "corrupt or truncated" in msg and "1 file(s) failed" in msg


def test_label_values_out_of_range(twin, tmp_path):
    src = twin("ade20k")
    ann = src / "annotations" / "training" / "ADE_train_00000004.png"
    arr = np.array(Image.open(ann))
    arr[:3, :3] = 200
    Image.fromarray(arr).save(ann)
    msg = _fails("ade20k", src, tmp_path / "dst", r"ADE_train_00000004.png: label values \[200\] outside")
    assert "1..150" in msg


def test_cityscapes_label_id_out_of_range(twin, tmp_path):
    src = twin("cityscapes")
    ann = next(src.glob("gtFine/val/*/*_labelIds.png"))
    arr = np.array(Image.open(ann))
    arr[0, 0] = 40
    Image.fromarray(arr).save(ann)
    _fails("cityscapes", src, tmp_path / "dst", rf"{ann.name}: label values \[40\] outside.*labelIds 0..33")


def test_image_without_label(twin, tmp_path):
    src = twin("ade20k")
    (src / "annotations" / "training" / "ADE_train_00000007.png").unlink()
    msg = _fails("ade20k", src, tmp_path / "dst", "image without label")
    assert "ADE_train_00000007.jpg" in msg and "annotations/training/ADE_train_00000007.png" in msg
    assert not (tmp_path / "dst").exists()  # listing fails before anything is written


def test_label_without_image(twin, tmp_path):
    src = twin("cityscapes")
    img = next(src.glob("leftImg8bit/train/*/*_leftImg8bit.png"))
    img.unlink()
    msg = _fails("cityscapes", src, tmp_path / "dst", "label without image")
    assert img.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png") in msg and img.name in msg


def test_size_mismatch(twin, tmp_path):
    src = twin("ade20k")
    ann = src / "annotations" / "validation" / "ADE_val_00000001.png"
    Image.open(ann).crop((0, 0, 50, 40)).save(ann)
    _fails("ade20k", src, tmp_path / "dst", r"ADE_val_00000001.png: label is 50x40 \(WxH\) but image .* expected the same size")


def test_wrong_layout_names_missing_folder(twin, tmp_path):
    src = twin("ade20k")
    with pytest.raises(DataError, match=r"expected .*images/training \(missing 'images/training'\)"):
        prepare("ade20k", src.parent, tmp_path / "dst", progress=False)  # one level too high
    with pytest.raises(DataError, match="index_ade20k.pkl"):
        prepare("ade20k-full", src, tmp_path / "dst", progress=False)  # the wrong dataset
    assert not (tmp_path / "dst").exists()


def test_empty_split(twin, tmp_path):
    src = twin("ade20k")
    for p in (src / "images" / "validation").iterdir():
        p.unlink()
    for p in (src / "annotations" / "validation").iterdir():
        p.unlink()
    _fails("ade20k", src, tmp_path / "dst", r"split 'val' is empty: no images found under .*images/validation")


def test_coco10k_mat_without_variable(twin, tmp_path):
    src = twin("coco-stuff-10k")
    stem = (src / "imageLists" / "test.txt").read_text().split()[0]
    scipy.io.savemat(src / "annotations" / f"{stem}.mat", {"X": np.zeros((4, 4))})
    _fails("coco-stuff-10k", src, tmp_path / "dst", rf"{stem}.mat: no variable 'S'")


def test_coco10k_list_entry_missing(twin, tmp_path):
    src = twin("coco-stuff-10k")
    with open(src / "imageLists" / "train.txt", "a") as f:
        f.write("COCO_train2014_000000999999\n")
    _fails("coco-stuff-10k", src, tmp_path / "dst", "train.txt lists 'COCO_train2014_000000999999'")


def test_ade20k_full_index_points_at_missing_image(twin, tmp_path):
    src = twin("ade20k-full")
    img = next(src.glob("images/ADE/validation/*/*/ADE_val_00000002.jpg"))
    img.unlink()
    _fails("ade20k-full", src, tmp_path / "dst", "lists ADE_val_00000002.jpg but .* does not exist")


def test_ade20k_full_seg_not_rgb(twin, tmp_path):
    src = twin("ade20k-full")
    seg = next(src.glob("images/ADE/validation/*/*/ADE_val_00000004_seg.png"))
    Image.open(seg).convert("L").save(seg)
    _fails("ade20k-full", src, tmp_path / "dst", "ADE_val_00000004_seg.png: _seg.png has mode L, expected RGB")


def test_cli_reports_error_without_traceback(twin, tmp_path, capsys):
    src = twin("ade20k")
    (src / "annotations" / "validation" / "ADE_val_00000002.png").unlink()
    code = main(["prepare", "ade20k", "--src", str(src), "--dst", str(tmp_path / "dst"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "ADE_val_00000002" in err
    assert "Traceback" not in err
