"""The Bayes ceiling of a miniature twin: the mIoU of an oracle that sees each pixel's appearance cell.

A twin paints every region with one cell of the appearance alphabet (``synth.cell_of``). Pixels of one
cell are indistinguishable to any model (up to position, which the twins do not tie to classes), so the
best any model can do is to predict, for each cell, the class most frequent on that cell. Its mIoU on
the val split is the ceiling a reader compares the models against: 100% for a twin whose classes own
their cells, lower where classes share cells (ADE20K-Full's 847). Computed while the twin is written,
from the raw label values, and mapped to each dataset's evaluated classes here.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from protoseg.data.classes import read_table
from protoseg.data.synth import ALPHABET_CELLS, Region, cell_of

CEILING_FILE = "bayes_ceiling.json"


def ceiling_miou(counts: np.ndarray) -> float:
    """mIoU (%) of the per-cell oracle from ``counts[cell, class]`` (pixels of each evaluated class on
    each cell, void excluded): it predicts ``argmax`` over classes per cell; the mean runs over classes
    present in the ground truth or the prediction, as the project's metric."""
    counts = np.asarray(counts, dtype=np.float64)
    pred = counts.argmax(axis=1)
    occupied = counts.sum(axis=1) > 0
    num_classes = counts.shape[1]
    gt = counts.sum(axis=0)
    predicted = np.bincount(pred[occupied], weights=counts.sum(axis=1)[occupied], minlength=num_classes)
    tp = np.bincount(pred[occupied], weights=counts[occupied, pred[occupied]], minlength=num_classes)
    union = gt + predicted - tp
    present = union > 0
    return float(100.0 * (tp[present] / union[present]).mean()) if present.any() else 0.0


class CellCounter:
    """Pixel counts per (split, raw label value, alphabet cell), accumulated while a twin is drawn."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[int, np.ndarray]] = defaultdict(dict)

    def add(self, split: str, regions: list[Region], index: np.ndarray) -> None:
        """Count the pixels of one image (``index``: region index map) by raw value and cell."""
        per_region = np.bincount(index.ravel(), minlength=len(regions))
        table = self.counts[split]
        for region, n in zip(regions, per_region):
            if n:
                row = table.setdefault(int(region.value), np.zeros(ALPHABET_CELLS, dtype=np.int64))
                row[cell_of(region.key, region.mode)] += int(n)

    def matrix(self, split: str, value_to_class: dict[int, int], num_classes: int) -> np.ndarray:
        """``[cells, classes]`` counts of ``split`` with raw values mapped to evaluated classes
        (values missing from ``value_to_class`` are void)."""
        out = np.zeros((ALPHABET_CELLS, num_classes), dtype=np.int64)
        for value, row in self.counts[split].items():
            c = value_to_class.get(value)
            if c is not None:
                out[:, c] += row
        return out

    def pixels(self, split: str, values: list[int]) -> np.ndarray:
        """Pixel count of each raw value in ``split``."""
        table = self.counts[split]
        return np.array([int(table[v].sum()) if v in table else 0 for v in values], dtype=np.int64)


def _classes(dataset: str) -> tuple[dict[int, int], int]:
    if dataset in ("ade20k", "pretrain"):
        return {int(r["label_value"]): int(r["train_id"]) for r in read_table("ade20k_150.tsv")}, 150
    if dataset == "cityscapes":
        rows = read_table("cityscapes_labels_all.tsv")
        return {int(r["label_id"]): int(r["train_id"]) for r in rows
                if int(r["label_id"]) >= 0 and int(r["train_id"]) not in (255, -1)}, 19
    column = {"coco-stuff-10k": "label_value_10k", "coco-stuff-164k": "label_value_164k"}[dataset]
    return {int(r[column]): int(r["train_id"]) for r in read_table("coco_stuff_171.tsv")}, 171


def twin_ceilings(dataset: str, counter: CellCounter, val_split: str = "val") -> dict[str, float]:
    """The ceiling of ``dataset``'s twin, ``{"<N> classes": mIoU}``; ADE20K-Full gives its top-N
    ladder (150, 300, 500, 700, 847), ranked by training pixels as ``protoseg prepare`` ranks them."""
    if dataset != "ade20k-full":
        mapping, n = _classes(dataset)
        return {f"{n}": round(ceiling_miou(counter.matrix(val_split, mapping, n)), 2)}
    from protoseg.data.ranking import NUM_FULL, SUBSET_SIZES, rank_classes

    ade_ids = [int(r["ade_id"]) for r in read_table("ade20k_full_847.tsv")]
    order = rank_classes(counter.pixels("train", ade_ids))
    out = {}
    for n in (*SUBSET_SIZES, NUM_FULL):
        kept = sorted(order[:n].tolist())  # kept classes keep the 847-list order (ranking.py)
        mapping = {ade_ids[t]: i for i, t in enumerate(kept)}
        out[f"{n}"] = round(ceiling_miou(counter.matrix(val_split, mapping, n)), 2)
    return out
