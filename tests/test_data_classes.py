"""Label maps and class lists: the package copies as checked (tests/data/SHA256SUMS), and Cityscapes vs
cityscapesscripts."""
import hashlib

import numpy as np
import pytest

from protoseg.data.classes import TABLES, read_table
from protoseg.data.formats import ade20k, ade20k_full, cityscapes, coco_stuff
from protoseg.data.specs import ADE_FULL_TOP_N, get_spec


@pytest.mark.parametrize("name", TABLES)
def test_package_tables_are_the_checked_ones(name, pinned_sha256):
    """The class tables shipped with the package are byte for byte the ones checked against their
    sources (tests/data/SHA256SUMS)."""
    from importlib import resources

    ours = resources.files("protoseg.data.classes").joinpath(name).read_bytes()
    assert hashlib.sha256(ours).hexdigest() == pinned_sha256[f"protoseg/data/classes/{name}"]
    assert set(TABLES) == {p.rsplit("/", 1)[1] for p in pinned_sha256 if p.startswith("protoseg/data/classes/")}


def test_cityscapes_lut_matches_cityscapesscripts():
    from cityscapesscripts.helpers.labels import labels

    checked = 0
    for lab in labels:
        if lab.id < 0:
            continue
        expected = lab.trainId if 0 <= lab.trainId < 255 else 255
        assert cityscapes.LUT[lab.id] == expected, lab.name
        checked += 1
    assert checked == 34
    assert sorted(int(v) for v in set(cityscapes.LUT[cityscapes.LUT >= 0]) - {255}) == list(range(19))
    # the spec's list, spot-checked
    for label_id, train_id in [(7, 0), (8, 1), (11, 2), (23, 10), (26, 13), (31, 16), (33, 18), (0, 255), (29, 255)]:
        assert cityscapes.LUT[label_id] == train_id
    assert cityscapes.LUT[34] == -1  # beyond the table: an error value
    names = [lab.name for lab in sorted((x for x in labels if not x.ignoreInEval), key=lambda x: x.trainId)]
    assert list(get_spec("cityscapes").class_names) == names


def test_ade20k_lut_reduce_zero_label():
    assert ade20k.LUT[0] == 255
    assert (ade20k.LUT[1:151] == np.arange(150)).all()
    assert (ade20k.LUT[151:] == -1).all()
    rows = read_table("ade20k_150.tsv")
    assert [int(r["label_value"]) - 1 for r in rows] == [int(r["train_id"]) for r in rows]


def test_ade20k_full_lut_matches_table():
    rows = read_table("ade20k_full_847.tsv")
    assert len(rows) == 847
    for r in rows:
        assert ade20k_full.LUT[int(r["ade_id"])] == int(r["train_id"])
    assert (ade20k_full.LUT != 65535).sum() == 847
    assert ade20k_full.LUT[0] == 65535
    # the spec's decoding: id = R/10*256 + G
    rgb = np.array([[[10, 2, 7], [119, 255, 0], [0, 0, 0]]], dtype=np.uint8)
    assert ade20k_full.decode_class_mask(rgb).tolist() == [[258, 11 * 256 + 255, 0]]


def test_coco_stuff_luts():
    rows = read_table("coco_stuff_171.tsv")
    skipped_164k = {11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90}
    assert {int(r["label_value_164k"]) for r in rows} == set(range(182)) - skipped_164k
    for r in rows:
        t = int(r["train_id"])
        assert coco_stuff.LUT_164K[int(r["label_value_164k"])] == t
        assert coco_stuff.LUT_10K[int(r["label_value_10k"])] == t
    for v in skipped_164k:
        assert coco_stuff.LUT_164K[v] == 255 and coco_stuff.LUT_10K[v + 1] == 255
    assert coco_stuff.LUT_10K[0] == 255 and coco_stuff.LUT_164K[255] == 255
    assert coco_stuff.LUT_10K[183] == -1 and coco_stuff.LUT_164K[182] == -1


@pytest.mark.parametrize("name,n,ignore", [("ade20k", 150, 255), ("ade20k-full", 847, 65535),
                                           ("cityscapes", 19, 255), ("coco-stuff-10k", 171, 255),
                                           ("coco-stuff-164k", 171, 255)])
def test_specs(name, n, ignore):
    spec = get_spec(name)
    assert spec.num_classes == n == len(spec.class_names) == len(spec.palette)
    assert spec.ignore_index == ignore
    mini = get_spec(name, mini=True)
    assert mini.num_classes == n and mini.crop_size[0] <= 128
    if name == "cityscapes":
        assert spec.test_mode == "slide" and spec.crop_size == (512, 1024) and spec.base_scale == (2048, 1024)
        assert mini.crop_size[1] == 2 * mini.crop_size[0]
    else:
        assert spec.test_mode == "whole" and spec.crop_size == (512, 512) and spec.test_scale == (2048, 512)


def test_top_n_spec_needs_root():
    from protoseg.data.errors import DataError

    assert ADE_FULL_TOP_N == (150, 300, 500, 700, 847)
    assert get_spec("ade20k-full", top_n=847).num_classes == 847
    with pytest.raises(DataError, match="root"):
        get_spec("ade20k-full", top_n=300)
    with pytest.raises(DataError, match="top_n"):
        get_spec("ade20k", top_n=300)
