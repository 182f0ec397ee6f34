"""What the GPU check times and the GPU correctness tests run: the paper's two models at paper and
tiny sizes (``PAPER``, ``TINY``), synthetic batches, and one training step as the engine takes it.

Used by ``benchmarks/gpu_check.py`` and ``tests/gpu_correctness.py`` (``benchmarks/`` is not a
package: both put it on ``sys.path``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from protoseg.engine.train import compute_losses
from protoseg.models import ModelConfig


@dataclass(frozen=True)
class ModelSpec:
    """A paper model at one size: what to build and how it is trained and measured."""

    name: str  # the paper's model
    backbone: str
    dataset: str
    num_classes: int
    crop: tuple[int, int]  # training crop (H, W)
    perf_batch: int  # batch of the speed / memory measurement
    infer_size: tuple[int, int]  # inference input (H, W) at batch 1
    optim: str  # OptimConfig preset
    mmseg_gib: float | None = None  # MMSegmentation's training memory of the softmax model
    mmseg_batch: int = 2  # images per GPU behind that figure
    mmseg_ref: str = ""
    overrides: dict = field(default_factory=dict)  # extra ModelConfig fields


@dataclass(frozen=True)
class Sizes:
    models: tuple[ModelSpec, ...]
    amp_iters: int = 20
    amp_batch: int = 2
    perf_warmup: int = 3
    perf_iters: int = 10
    latency_warmup: int = 3
    latency_reps: int = 20
    sinkhorn_n: int = 10_000
    sinkhorn_runs: int = 200
    step: dict = field(default_factory=lambda: {"N": 131072, "D": 720, "K": 10, "C": (19, 150, 847), "runs": 3})
    equiv: dict = field(default_factory=lambda: {"N": 16384, "D": 720, "K": 10, "C": 19})
    ddp_crop: tuple[int, int] = (128, 256)


PAPER = Sizes(models=(
    ModelSpec("hrnet_w48", "hrnet_w48", "cityscapes", 19, (512, 1024), 2, (1024, 2048), "sgd", 6.2, 2,
              "MMSegmentation FCN HRNetV2p-W48, Cityscapes 512x1024, 2 images/GPU: 6.2 GB"),
    ModelSpec("mit_b2", "mit_b2", "ade20k", 150, (512, 512), 4, (512, 512), "adamw", 3.6, 2,
              "MMSegmentation SegFormer MiT-B2, ADE20K 512x512, 2 images/GPU: 3.6 GB"),
))
TINY = Sizes(
    models=(
        ModelSpec("hrnet_w48", "hrnet_w18_small", "cityscapes", 19, (64, 128), 2, (64, 128), "sgd", 6.2, 2,
                  "MMSegmentation FCN HRNetV2p-W48 (not comparable at tiny sizes)"),
        ModelSpec("mit_b2", "mit_b0", "ade20k", 150, (64, 64), 4, (64, 64), "adamw", 3.6, 2,
                  "MMSegmentation SegFormer MiT-B2 (not comparable at tiny sizes)",
                  overrides={"decoder_channels": 32}),
    ),
    amp_iters=20, perf_warmup=1, perf_iters=3, latency_warmup=1, latency_reps=3, sinkhorn_n=2000,
    sinkhorn_runs=20, step={"N": 2048, "D": 32, "K": 10, "C": (19, 150, 847), "runs": 1},
    equiv={"N": 2048, "D": 32, "K": 10, "C": 19}, ddp_crop=(64, 128),
)


def synthetic_batch(i: int, batch: int, crop: tuple[int, int], num_classes: int, seed: int = 0):
    """Batch ``i``: piecewise-constant labels (16x16 blocks, 5% ignored) and images made of a fixed
    colour per class plus noise, so the losses fall; the same for every precision and head."""
    g = torch.Generator().manual_seed(seed * 100_003 + i)
    h, w = crop
    coarse = torch.randint(0, num_classes, (batch, 1, max(h // 16, 1), max(w // 16, 1)), generator=g)
    labels = F.interpolate(coarse.float(), size=(h, w), mode="nearest").long().squeeze(1)
    palette = torch.Generator().manual_seed(seed)
    colours = torch.randn(num_classes, 3, generator=palette)
    images = colours[labels].permute(0, 3, 1, 2) + 0.5 * torch.randn(batch, 3, h, w, generator=g)
    labels[torch.rand(batch, h, w, generator=g) < 0.05] = 255
    return images.contiguous(), labels


def model_config(spec: ModelSpec, head: str, *, deterministic: bool) -> ModelConfig:
    """The spec's model; ``deterministic``: no dropout or drop-path, so precisions compare one to one."""
    kw: dict = dict(spec.overrides)
    if deterministic:
        kw["dropout"] = 0.0
        if spec.backbone.startswith(("mit", "swin")):
            kw["drop_path_rate"] = 0.0
    return ModelConfig(backbone=spec.backbone, head=head, num_classes=spec.num_classes, **kw)


def train_step(model, opt, scaler, images, labels, amp: torch.dtype | None, device: torch.device):
    """One step as the engine's loop takes it (forward with labels, Eq. 13 + aux, backward, step)."""
    with torch.autocast(device_type=device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
        out = model(images, labels)
        terms = compute_losses(out, labels, ignore_index=255, aux_weight=0.4,
                               align_corners=bool(getattr(model, "align_corners", False)))
    scaler.scale(terms["total"]).backward()
    scaler.step(opt)
    scaler.update()
    opt.zero_grad(set_to_none=True)
    return terms


def tf32_flags() -> dict:
    """Whether TF32 is allowed for matmuls and for cuDNN convolutions."""
    return {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}


def set_tf32(matmul: bool, cudnn: bool | None = None) -> tuple[bool, bool]:
    """Allow TF32 or not (``cudnn``: as ``matmul`` when None); returns the previous flags."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = matmul
    torch.backends.cudnn.allow_tf32 = matmul if cudnn is None else cudnn
    return old
