"""``SegmentationDataset`` over a prepared root, the evaluation sampler and collate.

The training loader (data order by iteration, items keyed by ``(epoch, index)``) is the trainer's:
``protoseg.engine.data_order``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

import numpy as np
from torch.utils.data import Dataset, Sampler

from protoseg.data.errors import DataError
from protoseg.data.identity import check_labels
from protoseg.data.image_io import read_label_png, read_rgb


def read_meta(root: str | Path) -> dict:
    path = Path(root) / "meta.json"
    if not path.is_file():
        raise DataError(f"{root}: not a complete prepared root (meta.json missing: preparation never "
                        "finished or failed); run `protoseg prepare` first")
    meta = json.loads(path.read_text())
    if not meta.get("complete"):
        raise DataError(f"{path}: 'complete' is not true")
    return meta


class SegmentationDataset(Dataset):
    """One split of a prepared root, through a pipeline ``(image, label, rng) -> dict``.

    Items are the pipeline's dict plus ``stem`` and ``index``. The random generator of item ``i`` is
    seeded by ``(seed, 0, i)``, as the trainer seeds item ``i`` of epoch 0 (it keys items by
    ``(epoch, i)``): augmentation does not depend on worker count or order.
    """

    def __init__(self, root: str | Path, split: str, pipeline: Callable, *, label_dir: str = "labels",
                 seed: int = 0):
        self.root, self.split, self.pipeline = Path(root), split, pipeline
        self.meta = read_meta(root)
        if split not in self.meta["splits"]:
            raise DataError(f"{root}: no split {split!r}; prepared splits are {list(self.meta['splits'])}")
        dirs = {s["dir"]: s for s in self.meta["label_sets"].values()}
        if label_dir not in dirs:
            raise DataError(f"{root}: no label set {label_dir!r}; available: {sorted(dirs)}")
        self.label_dir, self.num_classes = label_dir, dirs[label_dir]["num_classes"]
        self.ignore_index = int(self.meta["ignore_index"])
        self.stems = (self.root / "splits" / f"{split}.txt").read_text().split()
        if not self.stems:
            raise DataError(f"{root}: split {split!r} is empty")
        self.seed = seed
        # decoded (image, label) per item, kept after the first read when ``cache_decoded`` is set
        # (data.cache_decoded: the mini scale's twins are a few MB; real datasets are read every epoch)
        self.cache_decoded = False
        self._decoded: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def from_spec(cls, root: str | Path, spec, split: str | None = None, *, train: bool,
                  seed: int = 0) -> "SegmentationDataset":
        from protoseg.data.pipelines import pipelines_from_spec

        split = split or (spec.train_split if train else spec.eval_split)
        return cls(root, split, pipelines_from_spec(spec, train=train), label_dir=spec.label_dir,
                   seed=seed)

    def __len__(self) -> int:
        return len(self.stems)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 HxWx3 RGB image, int64 HxW label) of item ``i``, before the pipeline."""
        image = read_rgb(self.root / "images" / self.split / f"{self.stems[i]}{self.meta['image_ext']}")
        # a value outside [0, C) plus ignore is a DataError naming the file, never an error inside torch
        return image, self.label(i)

    def label(self, i: int) -> np.ndarray:
        """The int64 HxW label of item ``i`` alone (no image decoded), checked as ``load`` checks it."""
        label_path = self.root / self.label_dir / self.split / f"{self.stems[i]}.png"
        label = read_label_png(label_path).astype(np.int64)
        check_labels(label, self.num_classes, self.ignore_index, [str(label_path)])
        return label

    def decoded(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``load(i)``, from memory after the first read when ``cache_decoded`` is set (a copy: the
        pipeline may write in place)."""
        if not self.cache_decoded:
            return self.load(i)
        if i not in self._decoded:
            self._decoded[i] = self.load(i)
        return tuple(a.copy() for a in self._decoded[i])

    def __getitem__(self, i: int) -> dict:
        image, label = self.decoded(i)
        out = self.pipeline(image, label, np.random.default_rng([self.seed, 0, i]))
        out["stem"], out["index"] = self.stems[i], i
        return out


class ShardSampler(Sampler[int]):
    """Evaluation sampler: rank r gets a contiguous shard, no index repeated (unlike
    DistributedSampler, which pads with duplicates that would be counted twice in metrics)."""

    def __init__(self, n: int, rank: int, world_size: int):
        per = math.ceil(n / world_size)
        self.indices = list(range(min(rank * per, n), min((rank + 1) * per, n)))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def collate_test(batch: list[dict]) -> dict:
    """Test items differ in size: keep images and labels as lists."""
    return {k: [b[k] for b in batch] for k in batch[0]}
