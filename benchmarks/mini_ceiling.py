"""The mini scale's learning ceiling: what an ideal local learner reaches on each twin per budget.

The twins carry their classes in local appearance (colour and faint texture, ``protoseg/data/synth.py``),
so a per-pixel classifier of colour is the best a model that reads local appearance can do. This
script trains one, on the real prepared twin through the trainer's own dataset pipeline (crops,
flips, scales), at the decoders' output stride 4, and evaluates it on the val split with the
project's metric. It has no depth to learn through: it bounds from above what the paper's backbones
reach in the same number of image views. Its optimiser is tuned for speed (AdamW, lr 1e-2, width
256; the lr/width sweep is in docs/mini_recipe.md). With ``--pretrain N`` its colour layers are first
trained for N steps to tell apart every cell of the twins' colour grid (an ideal pre-training on the
twins' whole appearance alphabet), then fine-tuned.

    python benchmarks/mini_ceiling.py --entries t1-segf-b4 t2-segf-b4 --steps 120 960

Writes results/benchmarks/mini_ceiling.json and prints a markdown table. Each point is seeded.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from protoseg.data.dataset import SegmentationDataset
from protoseg.data.synth import _GRID
from protoseg.data.transforms import MEAN, STD
from protoseg.config import RunConfig
from protoseg.evaluation.metrics import SegMetric
from protoseg.pipeline.experiments import build_plan

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mini_runs import save_rows  # noqa: E402

WIDTH = 256
STRIDE = 4  # the decoders' output stride


class PixelColourClassifier(nn.Module):
    """Two hidden 1x1 layers on the stride-4 mean colour, upsampled bilinearly to the input size."""

    def __init__(self, num_classes: int, width: int = WIDTH, stride: int = STRIDE):
        super().__init__()
        self.stride = stride
        self.body = nn.Sequential(nn.Conv2d(3, width, 1), nn.ReLU(), nn.Conv2d(width, width, 1), nn.ReLU())
        self.cls = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        z = self.cls(self.body(F.avg_pool2d(x, self.stride)))
        return F.interpolate(z, (h, w), mode="bilinear", align_corners=False)


def pretrain_colour_grid(body: nn.Module, steps: int, width: int = WIDTH, seed: int = 1) -> float:
    """Train ``body`` to classify every cell of the twins' colour grid (independent noisy pixels)."""
    cells = torch.tensor(_GRID, dtype=torch.float32)
    mean, std = torch.tensor(MEAN), torch.tensor(STD)
    head = nn.Conv2d(width, len(cells), 1)
    opt = torch.optim.AdamW([*body.parameters(), *head.parameters()], lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        y = torch.randint(0, len(cells), (1024,), generator=gen)
        x = ((cells[y] + torch.randn(1024, 3, generator=gen) * 6 - mean) / std).T.reshape(1, 3, 32, 32)
        loss = F.cross_entropy(head(body(x)), y.reshape(1, 32, 32))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach())


def run_point(cfg: RunConfig, steps: int, batch: int, lr: float, pretrain: int, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    spec = cfg.dataset_spec()
    train = SegmentationDataset.from_spec(cfg.data.root, spec, train=True, seed=seed)
    if not cfg.data.photometric:
        train.pipeline = dataclasses.replace(train.pipeline, photometric=False)
    val = SegmentationDataset.from_spec(cfg.data.root, spec, train=False)
    model = PixelColourClassifier(spec.num_classes)
    t0 = time.perf_counter()
    pre_loss = pretrain_colour_grid(model.body, pretrain) if pretrain else None
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        items = [train[int(i)] for i in rng.integers(len(train), size=batch)]
        x, y = torch.stack([it["image"] for it in items]), torch.stack([it["label"] for it in items])
        loss = F.cross_entropy(model(x), y, ignore_index=spec.ignore_index)
        opt.zero_grad()
        loss.backward()
        opt.step()
    metric = SegMetric(spec.num_classes, spec.ignore_index)
    with torch.no_grad():
        for i in range(len(val)):
            item = val[i]
            logits = F.interpolate(model(item["image"][None]), item["label"].shape, mode="bilinear",
                                   align_corners=False)
            metric.update(logits.argmax(1)[0], item["label"])
    res = metric.compute()
    return {"dataset": cfg.data.dataset, "top_n": cfg.data.top_n, "classes": spec.num_classes,
            "steps": steps, "batch": batch, "image_views": steps * batch, "lr": lr, "pretrain_steps": pretrain,
            "pretrain_loss": None if pre_loss is None else round(pre_loss, 3),
            "mIoU": round(100 * float(res["mIoU"]), 2), "aAcc": round(100 * float(res["aAcc"]), 2),
            "seconds": round(time.perf_counter() - t0, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", nargs="+", default=["t2-segf-b4", "t1-segf-b4", "t3-fcn-r101",
                                                      "t4-param-k1-847"])
    ap.add_argument("--steps", nargs="+", type=int, default=[120, 960])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--pretrain", nargs="+", type=int, default=[0, 300])
    ap.add_argument("--out", default="results/benchmarks/mini_ceiling.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    plan = build_plan()
    rows = []
    for entry in args.entries:
        raw = plan.run_config(plan.entry_run[entry], 0, entry)
        cfg = RunConfig.from_dict(raw, source=entry)
        for steps in args.steps:
            for pre in args.pretrain:
                rows.append({"entry": entry, **run_point(cfg, steps, args.batch, args.lr, pre)})
                save_rows(Path(args.out), rows)
    print("| twin | classes | steps x batch | colour pre-training | ideal-learner mIoU | aAcc |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        twin = r["dataset"] + (f" top-{r['top_n']}" if r["top_n"] else "")
        print(f"| {twin} | {r['classes']} | {r['steps']} x {r['batch']} | "
              f"{r['pretrain_steps'] or 'none'} | {r['mIoU']} | {r['aAcc']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
