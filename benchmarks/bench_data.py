"""Data benchmarks: preparation throughput and training-loader throughput.

    .venv/bin/python benchmarks/bench_data.py [--workers 2] [--images 120] [--out results.json]

1. Writes an ADEChallengeData2016-format set of ``--images`` training images at ADE20K's typical
   size (512x683) with ``make-mini``'s generator, then times ``prepare`` (fresh, and a re-run that
   skips every file after checking its sha256).
2. Times the loader the trainer uses (``protoseg.engine.data_order``: ``IterationBatchSampler`` over
   items keyed by ``(epoch, index)``, built as ``train._loaders`` builds it; the full recipe pipeline:
   ratio-range resize from base scale (2048, 512), 512x512 crop with cat_max_ratio, flip,
   photometric distortion, normalise, pad) with ``--workers`` worker processes and batch 8, in
   images per second after one warm-up batch; and the same at the miniature twins' crop (128x128).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from protoseg.data.dataset import SegmentationDataset
from protoseg.data.identity import check_root_identity
from protoseg.data.mini import make_mini
from protoseg.data.prepare import prepare
from protoseg.data.specs import get_spec
from protoseg.engine.data_order import IterationBatchSampler, EpochItems


def trainer_loader(ds: SegmentationDataset, *, batch: int, workers: int, iters: int, seed: int = 0):
    """The training loader exactly as ``protoseg.engine.train._loaders`` builds it (1 process)."""
    sampler = IterationBatchSampler(len(ds), global_batch=batch, grad_accum=1, rank=0, world_size=1,
                                    seed=seed, start=0, total=iters)
    return torch.utils.data.DataLoader(EpochItems(ds), batch_sampler=sampler, num_workers=workers,
                                       pin_memory=torch.cuda.is_available(),
                                       generator=torch.Generator().manual_seed(seed))


def loader_throughput(root: Path, spec, *, workers: int, batch: int, batches: int) -> float:
    check_root_identity(root, dataset=spec.name, num_classes=spec.num_classes, label_dir=spec.label_dir,
                        ignore_index=spec.ignore_index, splits=(spec.train_split,), what="root")
    ds = SegmentationDataset.from_spec(root, spec, train=True, seed=0)
    it = iter(trainer_loader(ds, batch=batch, workers=workers, iters=batches + 1))
    next(it)  # warm-up: worker start and first batch
    n, t0 = 0, time.perf_counter()
    for b in it:
        n += b["image"].shape[0]
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--images", type=int, default=120)
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    res = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
           "torch": torch.__version__, "workers": args.workers}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        make_mini("ade20k", tmp / "src", seed=0, n_train=args.images, n_val=8, size=(512, 683))
        res["synth_images_per_s"] = round((args.images + 8) / (time.perf_counter() - t0), 1)
        n = args.images + 8
        t0 = time.perf_counter()
        prepare("ade20k", tmp / "src", tmp / "dst", workers=args.workers, progress=False)
        res["prepare_images_per_s"] = round(n / (time.perf_counter() - t0), 1)
        t0 = time.perf_counter()
        prepare("ade20k", tmp / "src", tmp / "dst", workers=args.workers, progress=False)
        res["prepare_rerun_skip_images_per_s"] = round(n / (time.perf_counter() - t0), 1)

        full = get_spec("ade20k")
        res["loader_images_per_s_crop512"] = round(
            loader_throughput(tmp / "dst", full, workers=args.workers, batch=8, batches=args.batches), 1)
        make_mini("ade20k", tmp / "mini-src", seed=0)
        prepare("ade20k", tmp / "mini-src", tmp / "mini", workers=args.workers, progress=False)
        res["loader_images_per_s_mini_crop128"] = round(
            loader_throughput(tmp / "mini", get_spec("ade20k", mini=True), workers=args.workers,
                              batch=8, batches=args.batches * 3), 1)
    print(json.dumps(res, indent=1))
    if args.out:
        args.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
