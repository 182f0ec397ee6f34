"""``protoseg make-mini``: miniature twins of each dataset, in exactly its official on-disk format.

The twins are synthetic (see ``synth.py``): long-tailed class frequencies, three appearance modes per
class, deterministic for a seed, a few seconds to write, and ``prepare`` runs on them unchanged.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import scipy.io

from protoseg.atomic_io import write_bytes_atomic
from protoseg.data.ceiling import CEILING_FILE, CellCounter, twin_ceilings
from protoseg.data.classes import read_table
from protoseg.data.errors import DataError
from protoseg.data.image_io import encode_jpeg, encode_png
from protoseg.data.synth import ALPHABET_SLOTS, NUM_MODES, Region, long_tail_counts, rasterise, render, scene

TWINS = ("ade20k", "ade20k-full", "cityscapes", "coco-stuff-10k", "coco-stuff-164k")
ALPHA = 0.7  # power law of the class frequencies (rank r drawn with weight (r + 1)^-ALPHA)
IMAGE_SIZE = (32, 32)  # (h, w) of every twin image (one ADE20K-Full image is larger: the resize path)
# Appearance keys (synth.py): a twin's classes take keys base + value/rank with base a multiple of
# ALPHABET_SLOTS, so their slots (alphabet cells) start at 0 and never collide below 360 classes.
ADE20K_KEY0 = 3 * ALPHABET_SLOTS  # + label value 1..150: slots 1..150
CITYSCAPES_KEY0 = 6 * ALPHABET_SLOTS  # + labelId 0..33: slots 0..33
COCO_KEY0 = 9 * ALPHABET_SLOTS  # + train id 0..170: slots 0..170
ADE_FULL_KEY0 = 14 * ALPHABET_SLOTS  # + rank 0..846 in the 847 list: wraps the alphabet 2.35 times
UNLABELLED_KEY = 2777 * ALPHABET_SLOTS + 175  # "other"/void regions: slot 175, no class of a <=171 twin
# The pre-training twin's 150 classes use slots 210..359: disjoint from the 19-, 150- and 171-class
# twins (slots 0..170) and from ADE20K-Full's top-150 (ADE20K-Full's larger vocabularies wrap onto them).
PRETRAIN_KEY0 = 57 * ALPHABET_SLOTS + 209


def _write(path: Path, data: bytes) -> None:
    write_bytes_atomic(path, data)


def _size(rng: np.random.Generator) -> tuple[int, int]:
    return IMAGE_SIZE


def _allocate(rng, n_images: int, n_classes: int, total: int, alpha: float,
              guarantee_all: bool, per_image: tuple[int, int] | None = None) -> list[list[int]]:
    """Ranks of the objects of each image. With ``guarantee_all`` every rank occurs at least once
    (in the long-tailed counts); otherwise ranks are drawn from the same power law."""
    if guarantee_all:
        counts = long_tail_counts(n_classes, total, alpha, 1)
        ranks = np.repeat(np.arange(n_classes), counts)
        rng.shuffle(ranks)
        return [list(map(int, c)) for c in np.array_split(ranks, n_images)]
    w = (np.arange(n_classes) + 1.0) ** -alpha
    lo, hi = per_image or (max(1, total // n_images - 2), total // n_images + 2)
    return [list(map(int, rng.choice(n_classes, size=int(rng.integers(lo, hi + 1)), p=w / w.sum())))
            for _ in range(n_images)]


def _rank_scene(rng, h, w, ranks, values, keys, n_bg: int, p_unlabelled: float,
                unlabelled_value: int) -> list[Region]:
    """A scene from ranks: background from the ``n_bg`` most frequent classes, some unlabelled."""
    n = len(values)
    bg = int(rng.integers(min(n_bg, n)))
    objects = [(values[r], keys[r], r) for r in ranks]
    if rng.random() < p_unlabelled:
        objects.append((unlabelled_value, UNLABELLED_KEY, n // 2))
    return scene(rng, h, w, (values[bg], keys[bg]), objects, n)


# ---- ADE20K (ADEChallengeData2016) ------------------------------------------------------------
def make_ade20k(dst: Path, rng: np.random.Generator, n_train: int = 2000, n_val: int = 300,
                size: tuple[int, int] | None = None, key0: int = ADE20K_KEY0, alpha: float = ALPHA,
                counter: CellCounter | None = None) -> dict:
    """``size`` (h, w) fixes the image size (benchmarks; default ``IMAGE_SIZE``). ``key0``: the
    appearance key of label value 0 (the pre-training twin uses its own classes); ``alpha``: the tail."""
    rows = read_table("ade20k_150.tsv")
    values = [int(r["label_value"]) for r in rows]
    keys = [key0 + v for v in values]
    for split, official, prefix, n, total, guarantee in (
            ("train", "training", "ADE_train", n_train, 5 * n_train, True),
            ("val", "validation", "ADE_val", n_val, 5 * n_val, False)):
        for i, ranks in enumerate(_allocate(rng, n, 150, max(total, 150 if guarantee else 1), alpha, guarantee), start=1):
            h, w = size or _size(rng)
            regions = _rank_scene(rng, h, w, ranks, values, keys, 8, 0.5, 0)
            index = rasterise(regions, h, w)
            if counter is not None:
                counter.add(split, regions, index)
            label = np.array([r.value for r in regions], dtype=np.uint8)[index]
            stem = f"{prefix}_{i:08d}"
            _write(dst / "images" / official / f"{stem}.jpg", encode_jpeg(render(regions, index, rng), 92))
            _write(dst / "annotations" / official / f"{stem}.png", encode_png(label))
    lines = ["Idx\tRatio\tTrain\tVal\tName"] + [
        f"{r['label_value']}\t{r['pixel_ratio']}\t0\t0\t{r['name']}" for r in rows]
    _write(dst / "objectInfo150.txt", ("\n".join(lines) + "\n").encode())
    _write(dst / "sceneCategories.txt", b"".join(
        f"ADE_{'train' if s == 't' else 'val'}_{i:08d} synthetic\n".encode()
        for s, n in (("t", n_train), ("v", n_val)) for i in range(1, n + 1)))
    return {"train": n_train, "val": n_val}


# ---- ADE20K-Full (ADE20K_2021_17_01) ----------------------------------------------------------
ADE_SCENES = ("cultural/apse__indoor", "urban/street", "home_or_hotel/bedroom", "nature_landscape/coast")
ADE_FULL_PRESENT = 847  # ranks of the 847 list drawn in train (every one at least once)


def _ade_full_names(rows) -> list[str]:
    names = [f"synthetic class {i}" for i in range(1, 3689)]
    for r in rows:
        names[int(r["ade_id"]) - 1] = r["name"]
    return names


def make_ade20k_full(dst: Path, rng: np.random.Generator, n_train: int = 2000, n_val: int = 600,
                     counter: CellCounter | None = None) -> dict:
    rows = read_table("ade20k_full_847.tsv")
    ade_ids = [int(r["ade_id"]) for r in rows]
    in_847 = set(ade_ids)
    outside = [i for i in range(1, 3689) if i not in in_847][:40]  # classes outside the 847 -> ignore
    values = ade_ids[:ADE_FULL_PRESENT]
    keys = [ADE_FULL_KEY0 + rank for rank in range(len(values))]
    names = _ade_full_names(rows)
    index = {"filename": [], "folder": [], "scene": [], "objectnames": names}
    presence = []
    root_name = "ADE20K_2021_17_01"
    for split, official, prefix, n, guarantee in (("train", "training", "ADE_train", n_train, True),
                                                  ("val", "validation", "ADE_val", n_val, False)):
        alloc = _allocate(rng, n, ADE_FULL_PRESENT, max(6 * n, ADE_FULL_PRESENT if guarantee else 1), ALPHA, guarantee)
        for i, ranks in enumerate(alloc, start=1):
            h, w = (520, 600) if (split == "train" and i == 1) else _size(rng)  # one > 512: resized
            regions = _rank_scene(rng, h, w, ranks, values, keys, 6, 0.0, 0)
            for _ in range(int(rng.integers(0, 3))):  # classes outside the 847 and unlabelled
                v = int(rng.choice(outside)) if rng.random() < 0.7 else 0
                regions += scene(rng, h, w, (0, 0), [(v, UNLABELLED_KEY + v, len(values) // 2)],
                                 len(values))[1:]
            idx = rasterise(regions, h, w)
            if counter is not None:
                counter.add(split, regions, idx)
            ids = np.array([r.value for r in regions], dtype=np.int64)[idx]
            inst = np.arange(len(regions), dtype=np.int64)[idx] % 256
            seg = np.stack([(ids // 256) * 10, ids % 256, inst], axis=-1).astype(np.uint8)
            scene_path = ADE_SCENES[int(rng.integers(len(ADE_SCENES)))]
            folder = f"{root_name}/images/ADE/{official}/{scene_path}"
            stem = f"{prefix}_{i:08d}"
            d = dst / "images" / "ADE" / official / scene_path
            _write(d / f"{stem}.jpg", encode_jpeg(render(regions, idx, rng), 92))
            _write(d / f"{stem}_seg.png", encode_png(seg))
            _write(d / f"{stem}_parts_1.png", encode_png(np.zeros((h, w, 3), dtype=np.uint8)))
            objects = [{"id": k, "name": names[r.value - 1] if r.value else "unlabelled",
                        "name_ndx": r.value, "polygon": {"x": [p[0] for p in r.polygon],
                                                         "y": [p[1] for p in r.polygon]}}
                       for k, r in enumerate(regions) if r.value]
            ann = {"annotation": {"filename": f"{stem}.jpg", "folder": folder, "imsize": [h, w, 3],
                                  "source": {"origin": "protoseg make-mini"}, "scene": scene_path.split("/"),
                                  "object": objects}}
            _write(d / f"{stem}.json", json.dumps(ann).encode())
            index["filename"].append(f"{stem}.jpg")
            index["folder"].append(folder)
            index["scene"].append(scene_path)
            counts = np.bincount(ids.ravel(), minlength=3689)[1:]
            presence.append(counts > 0)
    pres = np.stack(presence, axis=1).astype(np.int32)  # [C, N]
    index["objectPresence"] = pres
    index["objectcounts"] = pres.sum(axis=1)
    _write(dst / "index_ade20k.pkl", pickle.dumps(index, protocol=4))
    _write(dst / "objects.txt", ("objectnames\tobjectcounts\n" + "".join(
        f"{nm}\t{c}\n" for nm, c in zip(names, index["objectcounts"]))).encode())
    return {"train": n_train, "val": n_val}


# ---- Cityscapes -------------------------------------------------------------------------------
CITIES = {"train": ("aachen", "bochum"), "val": ("frankfurt",)}
# labelIds drawn as objects, most frequent first (the 19 evaluated classes and a few void ones)
CS_OBJECTS = (8, 26, 21, 11, 17, 24, 20, 19, 22, 12, 13, 27, 28, 33, 32, 25, 31, 4, 5, 9, 14)


def make_cityscapes(dst: Path, rng: np.random.Generator, n_train: int = 2000, n_val: int = 300,
                    counter: CellCounter | None = None) -> dict:
    rows = {int(r["label_id"]): r for r in read_table("cityscapes_labels_all.tsv") if int(r["label_id"]) >= 0}
    h, w = IMAGE_SIZE
    for split, n, guarantee in (("train", n_train, True), ("val", n_val, False)):
        alloc = _allocate(rng, n, len(CS_OBJECTS), 5 * n, 0.6, guarantee)
        for i, ranks in enumerate(alloc):
            city = CITIES[split][i % len(CITIES[split])]
            stem = f"{city}_{i:06d}_{19 + i:06d}"
            horizon = float(rng.uniform(0.35, 0.55) * h)
            regions = [Region(23, CITYSCAPES_KEY0 + 23, int(rng.integers(NUM_MODES)), [(0, 0), (w, 0), (w, h), (0, h)]),  # sky
                       Region(7, CITYSCAPES_KEY0 + 7, int(rng.integers(NUM_MODES)),
                              [(0, horizon), (w, horizon), (w, h), (0, h)])]
            regions += scene(rng, h, w, (0, 0), [(CS_OBJECTS[r], CITYSCAPES_KEY0 + CS_OBJECTS[r], r) for r in ranks],
                             len(CS_OBJECTS))[1:]
            if rng.random() < 0.5:  # ego vehicle at the bottom (void)
                regions.append(Region(1, UNLABELLED_KEY, 0, [(0, h - 3), (w, h - 3), (w, h), (0, h)]))
            idx = rasterise(regions, h, w)
            if counter is not None:
                counter.add(split, regions, idx)
            label = np.array([r.value for r in regions], dtype=np.uint8)[idx]
            inst_id = np.array([r.value * 1000 + k if rows[r.value]["has_instances"] == "1" else r.value
                                for k, r in enumerate(regions)], dtype=np.uint16)[idx]
            colour = np.array([[int(rows[v][c]) for c in ("color_r", "color_g", "color_b")] + [255]
                               for v in range(34)], dtype=np.uint8)[label]
            img_dir = dst / "leftImg8bit" / split / city
            gt_dir = dst / "gtFine" / split / city
            _write(img_dir / f"{stem}_leftImg8bit.png", encode_png(render(regions, idx, rng)))
            _write(gt_dir / f"{stem}_gtFine_labelIds.png", encode_png(label))
            _write(gt_dir / f"{stem}_gtFine_instanceIds.png", encode_png(inst_id))
            _write(gt_dir / f"{stem}_gtFine_color.png", encode_png(colour))
            poly = {"imgHeight": h, "imgWidth": w, "objects": [
                {"id": k, "label": rows[r.value]["name"], "deleted": 0, "verified": 0,
                 "polygon": [[x, y] for x, y in r.polygon]} for k, r in enumerate(regions)]}
            _write(gt_dir / f"{stem}_gtFine_polygons.json", json.dumps(poly, indent=1).encode())
    return {"train": n_train, "val": n_val}


# ---- COCO-Stuff -------------------------------------------------------------------------------
def _coco_scenes(rng, n: int, total: int, guarantee: bool, value_col: str, unlabelled: int):
    rows = read_table("coco_stuff_171.tsv")
    values = [int(r[value_col]) for r in rows]
    keys = [COCO_KEY0 + int(r["train_id"]) for r in rows]
    # COCO's list is not frequency-ordered: rank classes by a fixed shuffle so things and stuff mix
    perm = np.random.default_rng(171).permutation(len(values))
    values, keys = [values[i] for i in perm], [keys[i] for i in perm]
    for ranks in _allocate(rng, n, len(values), total, ALPHA, guarantee):
        h, w = _size(rng)
        regions = _rank_scene(rng, h, w, ranks, values, keys, 10, 0.6, unlabelled)
        idx = rasterise(regions, h, w)
        yield regions, idx


def make_coco_stuff_10k(dst: Path, rng: np.random.Generator, n_train: int = 2000, n_val: int = 300,
                        counter: CellCounter | None = None) -> dict:
    k = 0
    for split, n, total, guarantee in (("train", n_train, max(5 * n_train, 171), True), ("test", n_val, 5 * n_val, False)):
        stems = []
        for regions, idx in _coco_scenes(rng, n, total, guarantee, "label_value_10k", 0):
            if counter is not None:
                counter.add("train" if split == "train" else "val", regions, idx)
            k += 1
            stem = f"COCO_train2014_{100000 + 37 * k:012d}"
            stems.append(stem)
            label = np.array([r.value for r in regions], dtype=np.uint16)[idx]
            _write(dst / "images" / f"{stem}.jpg", encode_jpeg(render(regions, idx, rng), 92))
            buf = _mat_bytes({"S": label})
            _write(dst / "annotations" / f"{stem}.mat", buf)
        _write(dst / "imageLists" / f"{split}.txt", "".join(s + "\n" for s in stems).encode())
    _write(dst / "imageLists" / "all.txt", "".join(
        ln for s in ("train", "test") for ln in (dst / "imageLists" / f"{s}.txt").read_text().splitlines(True)
    ).encode())
    return {"train": n_train, "test": n_val}


def _mat_bytes(variables: dict) -> bytes:
    import io

    buf = io.BytesIO()
    scipy.io.savemat(buf, variables, do_compression=True)
    return buf.getvalue()


def make_coco_stuff_164k(dst: Path, rng: np.random.Generator, n_train: int = 400, n_val: int = 100,
                         counter: CellCounter | None = None) -> dict:
    k = 0
    for split, n, total, guarantee in (("train2017", n_train, max(5 * n_train, 171), True), ("val2017", n_val, 5 * n_val, False)):
        for regions, idx in _coco_scenes(rng, n, total, guarantee, "label_value_164k", 255):
            if counter is not None:
                counter.add("train" if split == "train2017" else "val", regions, idx)
            k += 1
            stem = f"{9 + 13 * k:012d}"
            label = np.array([r.value for r in regions], dtype=np.uint8)[idx]
            _write(dst / "images" / split / f"{stem}.jpg", encode_jpeg(render(regions, idx, rng), 92))
            _write(dst / "annotations" / split / f"{stem}.png", encode_png(label))
    return {"train": n_train, "val": n_val}


def make_pretrain(dst: Path, rng: np.random.Generator, n_train: int = 4000, n_val: int = 300,
                  counter: CellCounter | None = None) -> dict:
    """The pre-training set of the mini scale (the twins' stand-in for ImageNet): 150 classes of its own
    on alphabet cells that no 19-, 150- or 171-class twin uses (``PRETRAIN_KEY0``), a mild tail (0.3),
    written in ADE20K's layout so that ``protoseg prepare ade20k`` and the trainer read it unchanged."""
    return make_ade20k(dst, rng, n_train=n_train, n_val=n_val, key0=PRETRAIN_KEY0, alpha=0.3, counter=counter)


MAKERS = {"ade20k": make_ade20k, "ade20k-full": make_ade20k_full, "cityscapes": make_cityscapes,
          "coco-stuff-10k": make_coco_stuff_10k, "coco-stuff-164k": make_coco_stuff_164k,
          "pretrain": make_pretrain}


def make_mini(dataset: str, dst: str | Path, *, seed: int = 0, **sizes) -> dict:
    """Write the twin of ``dataset`` into ``dst`` (which must be empty or absent) and its Bayes
    ceiling (``bayes_ceiling.json``: the per-cell oracle's val mIoU, ``ceiling.py``). ``sizes``
    (``n_train``, ``n_val``; ``size`` for ade20k) override the defaults, for benchmarks. Returns the
    split sizes and ``bayes_ceiling``."""
    if dataset not in MAKERS:
        raise DataError(f"unknown dataset {dataset!r}; expected one of {', '.join(MAKERS)}")
    dst = Path(dst)
    if dst.exists() and any(dst.iterdir()):
        raise DataError(f"--dst {dst} is not empty; make-mini writes into an empty folder")
    dst.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, list(MAKERS).index(dataset)])
    counter = CellCounter()
    out = MAKERS[dataset](dst, rng, counter=counter, **sizes)
    out["bayes_ceiling"] = twin_ceilings(dataset, counter)
    _write(dst / CEILING_FILE, (json.dumps(out["bayes_ceiling"], indent=1) + "\n").encode())
    return out
