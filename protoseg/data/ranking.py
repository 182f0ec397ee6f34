"""ADE20K-Full top-N subsets: rank the 847 classes by frequency on the prepared training set,
write ``ranking.tsv`` and one label set per N (``labels_top<N>``, N = 150, 300, 500, 700).

Within a top-N set, the kept classes keep the 847-list order and get train ids 0..N-1; all other
classes become 65535 (ignore). ``labels/`` itself is the full 847-class set.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import scipy.stats

from protoseg.config.datasets import WIDE_IGNORE_INDEX
from protoseg.atomic_io import sha256_bytes, write_bytes_atomic
from protoseg.data.classes import read_table
from protoseg.data.errors import DataError
from protoseg.data.image_io import encode_png, read_label_png
from protoseg.data.manifest import Manifest, entry_is_valid
from protoseg.data.parallel import ManifestCollector, run_parallel

SUBSET_SIZES = (150, 300, 500, 700)
RANKING_FILE = "ranking.tsv"
IGNORE = WIDE_IGNORE_INDEX
NUM_FULL = 847
RANKING_COLUMNS = ("rank", "name", "ade_id", "train_id", "pixel_count", "image_count",
                   "list_image_count")


def rank_classes(pixels: np.ndarray, by: str = "pixels") -> np.ndarray:
    """Full train ids ordered by rank: descending pixel count (ties: list order), or list order."""
    if by == "pixels":
        return np.lexsort((np.arange(len(pixels)), -pixels))
    if by == "list":
        return np.arange(len(pixels))
    raise DataError(f"--topn-by must be 'pixels' or 'list', got {by!r}")


def subset_ids(order: np.ndarray, n: int) -> list[int]:
    """The full train ids kept in the top-``n`` set, in 847-list order."""
    return sorted(int(i) for i in order[:n])


def read_ranking(path: Path) -> np.ndarray:
    """Full train ids in rank order, from a ranking.tsv."""
    lines = path.read_text().splitlines()
    if not lines or tuple(lines[0].split("\t")) != RANKING_COLUMNS:
        raise DataError(f"{path}: expected header {RANKING_COLUMNS}")
    return np.array([int(ln.split("\t")[3]) for ln in lines[1:]], dtype=np.int64)


@functools.lru_cache(maxsize=4)
def _luts(root: str, ranking_sha: str) -> dict[int, np.ndarray]:
    order = read_ranking(Path(root) / RANKING_FILE)
    luts = {}
    for n in SUBSET_SIZES:
        lut = np.full(IGNORE + 1, IGNORE, dtype=np.uint16)
        lut[subset_ids(order, n)] = np.arange(n, dtype=np.uint16)
        luts[n] = lut
    return luts


@dataclasses.dataclass(frozen=True)
class RemapTask:
    root: str
    label_rel: str  # labels/<split>/<stem>.png
    ranking_sha: str
    label_sha: str
    prev: tuple  # manifest entries of the outputs, in SUBSET_SIZES order


def out_rel(label_rel: str, n: int) -> str:
    return f"labels_top{n}/" + label_rel[len("labels/"):]


def remap_label(task: RemapTask):
    """Worker: write the top-N versions of one 847-class label file."""
    try:
        root = Path(task.root)
        dep = f"{task.ranking_sha}|{task.label_sha}"
        outs = [out_rel(task.label_rel, n) for n in SUBSET_SIZES]
        if all(entry_is_valid(root / o, p, dep) for o, p in zip(outs, task.prev)):
            return ("ok", dict(zip(outs, task.prev)), True)
        label = read_label_png(root / task.label_rel).astype(np.int64)
        luts = _luts(task.root, task.ranking_sha)
        entries = {}
        for n, o in zip(SUBSET_SIZES, outs):
            data = encode_png(luts[n][label])
            write_bytes_atomic(root / o, data)
            entries[o] = {"bytes": len(data), "sha256": sha256_bytes(data), "dep": dep}
        return ("ok", entries, False)
    except DataError as err:
        return ("error", str(err))
    except Exception as err:
        return ("error", f"{task.root}/{task.label_rel}: {type(err).__name__}: {err}")


def build_top_n(root: Path, manifest: Manifest, splits, samples, *, by: str, workers: int,
                progress: bool) -> dict:
    """Count, rank, write ranking.tsv and the top-N label sets. Returns meta.json's ranking info."""
    if "train" not in samples:
        raise DataError("ade20k-full: the top-N ranking is measured on the training split; "
                        "include 'train' in --splits")
    pixels = np.zeros(NUM_FULL, dtype=np.int64)
    images = np.zeros(NUM_FULL, dtype=np.int64)
    for smp in samples["train"]:
        hist = manifest.files[f"labels/train/{smp.stem}.png"].get("hist", {})
        for k, v in hist.items():
            pixels[int(k)] += v
            images[int(k)] += 1
    order = rank_classes(pixels, by)
    rows = read_table("ade20k_full_847.tsv")
    lines = ["\t".join(RANKING_COLUMNS)]
    for rank, tid in enumerate(order, start=1):
        r = rows[tid]
        lines.append(f"{rank}\t{r['name']}\t{r['ade_id']}\t{tid}\t{pixels[tid]}\t{images[tid]}\t"
                     f"{r['image_count']}")
    data = ("\n".join(lines) + "\n").encode()
    write_bytes_atomic(root / RANKING_FILE, data)
    ranking_sha = sha256_bytes(data)

    tasks = []
    for split in samples:
        for smp in samples[split]:
            rel = f"labels/{split}/{smp.stem}.png"
            tasks.append(RemapTask(str(root), rel, ranking_sha, manifest.files[rel]["sha256"],
                                   tuple(manifest.files.get(out_rel(rel, n)) for n in SUBSET_SIZES)))
    collector = ManifestCollector(manifest)
    run_parallel(remap_label, tasks, workers=workers, desc="ade20k-full top-N", progress=progress,
                 on_result=collector)
    collector.raise_if_failed("the top-N label sets")

    present = pixels > 0
    rho = scipy.stats.spearmanr(np.arange(NUM_FULL)[present], -pixels[present]).statistic \
        if present.sum() > 2 else float("nan")
    label_sets = {str(n): {"dir": f"labels_top{n}", "num_classes": n,
                           "full_train_ids": subset_ids(order, n)} for n in SUBSET_SIZES}
    return {"file": RANKING_FILE, "by": by, "sha256": ranking_sha,
            "classes_present_in_train": int(present.sum()),
            "spearman_list_order_vs_pixels": round(float(rho), 4),
            "label_sets": label_sets}
