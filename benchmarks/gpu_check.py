"""GPU path check: AMP correctness, Sinkhorn precision and speed, memory and speed of the paper models.

One script, one device, at most 8 minutes on an H200 by construction (few iterations, warm-up then
medians, a time budget checked before every section). It writes ``gpu.json`` (rewritten after every
section, so a timeout still leaves the finished sections) and ``gpu.md`` into ``--out``.

Correctness (each a check with its tolerance in the JSON; exit status 1 if one fails):
- ``sinkhorn_dtypes``: ``sinkhorn`` / ``sinkhorn_batched`` on fp16 and bf16 scores equal the float32
  plan of the same (rounded) values, and the float32 plan of the unrounded scores within the bound
  set by the input rounding (relative error <= 4 u / epsilon, u the half-ulp at 1 of the dtype).
- ``official_step``: the official variant's prototype step (``bench_prototype_step.our_step``) on the
  device equals the CPU's to 1e-5 (the Gumbel draw is replaced by the argmax: the CUDA and CPU
  generators draw different noise).
- ``ddp_syncbn``: a 1-process NCCL (CUDA) / gloo (CPU) group starts, all-reduces, and a DDP model with
  synchronised BatchNorm trains 2 iterations to the losses of the plain model.
- ``amp_<model>``: HRNet-W48 and MiT-B2 with the prototype head, paper crop, batch 2: 20 training
  iterations in fp32, fp16 and bf16 autocast from the same weights and batches; every loss finite,
  AMP total losses within a relative tolerance of fp32, prototypes unit-norm to 1e-5.

Speed and memory (each target gets ``met``: true / false, or null with the reason when not judged,
i.e. on CPU or at ``--tiny`` sizes):
- ``sinkhorn_speed``: 10K pixels x 10 prototypes, median of 200 runs (CUDA events); target <= 0.25 ms
  (the paper states 2.5 ms).
- ``prototype_step``: N=131072, D=720, K=10, C=19/150/847, ours against the release's loop
  (``bench_prototype_step``); targets: speed-up >= 20x at C=150 and >= 40x at C=847, peak memory at
  C=847 <= 1/3 of the loop's.
- ``train_<model>``: step time and peak memory, prototype head / softmax head (targets <= 1.10 each),
  and the softmax model's peak within 10% of MMSegmentation's figure (FCN HRNetV2-W48 Cityscapes
  6.2 GB, SegFormer MiT-B2 ADE20K 3.6 GB, both at 2 images per GPU).
- ``latency_<model>``: inference at batch 1, prototype / softmax (target <= 1.02, as
  ``bench_heads_latency.py``).
- ``mini_run`` (only with ``--mini-run``): wall time of ``snakemake -c1 tables`` of the mini scale;
  otherwise recorded as not measured, with the command.

    python benchmarks/gpu_check.py --device cuda --out results/benchmarks
    python benchmarks/gpu_check.py --device cpu --tiny --out /tmp/gpu_check      # CPU smoke
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here downloads; fail fast if something tries

import torch
import torch.distributed as dist
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
import bench_prototype_step as bps  # noqa: E402

from protoseg.atomic_io import write_bytes_atomic, write_json_atomic  # noqa: E402
from protoseg.config import OptimConfig  # noqa: E402
from protoseg.engine.distributed import DistInfo, maybe_sync_bn  # noqa: E402
from protoseg.engine.optim import build_optimizer  # noqa: E402
from protoseg.engine.train import compute_losses, git_commit  # noqa: E402
from protoseg.method import MethodConfig, sinkhorn, sinkhorn_batched  # noqa: E402
from protoseg.models import ModelConfig, build_model  # noqa: E402

EPSILON = 0.05  # Sinkhorn's kappa (Eq. 9)
HALF_ULP_AT_1 = {"fp16": 2.0 ** -12, "bf16": 2.0 ** -9}  # input rounding of scores in [-1, 1]
AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
# relative deviation of an AMP run's total loss from fp32's, at every one of the iterations
AMP_LOSS_RTOL = {"fp16": 0.02, "bf16": 0.05}
UNIT_NORM_TOL = 1e-5
DEVICE_VS_CPU_TOL = 1e-5
NO_PEAK = "cpu: peak allocated memory is a CUDA caching-allocator figure"


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


# ---- the report: written after every section ---------------------------------------------------
class Report:
    """Everything measured so far; ``save`` rewrites ``gpu.json`` and ``gpu.md`` atomically."""

    def __init__(self, out: Path, meta: dict, judged: bool, why_not: str):
        self.out, self.judged, self.why_not = out, judged, why_not
        self.data: dict[str, Any] = {"meta": meta, "status": "running", "checks": [], "targets": [],
                                     "skipped": [], "sections": {}}

    def check(self, name: str, value: float, tolerance: float, what: str, op: str = "<=") -> bool:
        """A correctness check: ``value`` finite and ``value <= tolerance`` (or ``>=``, ``==``)."""
        value = float(value)
        ok = math.isfinite(value) and {"<=": value <= tolerance, ">=": value >= tolerance,
                                       "==": value == tolerance}[op]
        self.data["checks"].append({"name": name, "value": value, "op": op, "tolerance": tolerance,
                                    "passed": bool(ok), "what": what})
        return ok

    def target(self, name: str, value: float | None, bound: float, op: str, unit: str, what: str,
               missing: str = "not measured") -> None:
        """A measured target (``op``: ``<=`` or ``>=``); ``met`` is null, with the reason, when the value
        is missing (``missing`` says why) or not judged here."""
        row = {"name": name, "value": value, "target": f"{op} {bound:.3g}{unit}", "bound": bound, "op": op,
               "unit": unit, "what": what}
        if value is None or not math.isfinite(value):
            row.update(met=None, reason=missing)
        elif not self.judged:
            row.update(met=None, reason=self.why_not)
        else:
            row["met"] = bool(value <= bound if op == "<=" else value >= bound)
        self.data["targets"].append(row)

    def partial(self, section: str, result: dict) -> None:
        """Save a section's results so far (``status: running``), for a run killed mid-section."""
        self.data["sections"][section] = {"status": "running", **result}
        self.save()

    def skip(self, what: str, reason: str) -> None:
        self.data["skipped"].append({"what": what, "reason": reason})

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.out / "gpu.json", _finite(self.data))
        write_bytes_atomic(self.out / "gpu.md", markdown(self.data).encode())


def markdown(data: dict) -> str:
    m = data["meta"]
    lines = [f"# GPU check: {m['device_name']}", "",
             f"`{m['command']}`; torch {m['torch']}, CUDA {m['cuda']}, commit `{m['git_commit'][:12]}`, "
             f"sizes: {'tiny' if m['tiny'] else 'paper'}; status: **{data['status']}**"
             f" ({data.get('elapsed_s', 0):.0f} s)", ""]
    lines += ["## Correctness checks", "", "| check | value | required | passed |", "|---|---|---|---|"]
    for c in data["checks"]:
        lines.append(f"| {c['name']} | {c['value']:.3g} | {c['op']} {c['tolerance']:.3g} | "
                     f"{'yes' if c['passed'] else '**NO**'} |")
    lines += ["", "## Targets", "", "| target | measured | target | met |", "|---|---|---|---|"]
    for t in data["targets"]:
        value = "not measured" if t["value"] is None else f"{t['value']:.4g}{t['unit']}"
        met = {True: "met", False: "**missed**", None: f"not judged ({t.get('reason', '')})"}[t["met"]]
        lines.append(f"| {t['name']} | {value} | {t['target']} | {met} |")
    step = data["sections"].get("prototype_step", {}).get("rows")
    if step:
        lines += ["", "## Prototype step (ours vs the release's loop)", "",
                  "| C | loop (ms) | ours (ms) | speed-up | loop peak (GiB) | ours peak (GiB) |",
                  "|---|---|---|---|---|---|"]
        for r in step:
            lines.append(f"| {r['C']} | {r['loop_ms']:.2f} | {r['ours_ms']:.2f} | {r['speedup']:.1f}x | "
                         f"{_fmt(r['loop_peak_gib'])} | {_fmt(r['ours_peak_gib'])} |")
    perf = [(k, v) for k, v in data["sections"].items() if k.startswith("train_") and "heads" in v]
    if perf:
        lines += ["", "## Training step and inference (fp32)", "",
                  "| model | head | batch | step (ms) | peak (GiB) | latency batch 1 (ms) |",
                  "|---|---|---|---|---|---|"]
        for key, sec in perf:
            lat = data["sections"].get(key.replace("train_", "latency_"), {}).get("ms", {})
            for head, r in sec["heads"].items():
                lines.append(f"| {sec['model']} | {head} | {sec['batch']} | {r['step_ms']:.1f} | "
                             f"{_fmt(r['peak_gib'])} | {_fmt(lat.get(head))} |")
    mini = data["sections"].get("mini_run")
    if mini:
        state = (f"{mini['wall_s']:.0f} s of wall time, training on {', '.join(mini['run_devices']) or '?'}"
                 if mini.get("measured") else "**not measured**" + (f" (exit {mini.get('returncode')})"
                                                                    if "wall_s" in mini else ""))
        lines += ["", "## Mini reproduction", "", f"`{mini['command']}` (in `{mini['cwd']}`): {state}"]
    if data["skipped"]:
        lines += ["", "## Skipped", ""] + [f"- {s['what']}: {s['reason']}" for s in data["skipped"]]
    errors = [(k, v["error"]) for k, v in data["sections"].items() if "error" in v]
    if errors:
        lines += ["", "## Errors", ""] + [f"- {k}: `{e}`" for k, e in errors]
    return "\n".join(lines) + "\n"


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


# ---- helpers ---------------------------------------------------------------------------------------
def log(msg: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], Any], runs: int, warmup: int, device: torch.device) -> float:
    """Median milliseconds of ``fn``: CUDA events around every run on a GPU, the wall clock on CPU."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(runs):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


class PeakMemory:
    """Peak allocated GiB above what was allocated on entry (CUDA); ``None`` on CPU."""

    def __init__(self, device: torch.device):
        self.device, self.gib = device, None

    def __enter__(self):
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.empty_cache()
            self.base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            sync(self.device)
            self.gib = (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**30
        return False


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


def head_of(model):
    return model.module.head if hasattr(model, "module") else model.head


def release() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---- correctness -----------------------------------------------------------------------------------
def check_sinkhorn_dtypes(rep: Report, sizes: Sizes, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    n, num_classes = sizes.sinkhorn_n, 19
    scores = (torch.rand(n, 10, generator=g) * 2 - 1).to(device)  # cosines spread over [-1, 1]: the hard case
    labels = torch.randint(0, num_classes, (n,), generator=g).to(device)
    ref_b = sinkhorn_batched(scores, labels, num_classes)
    ref_1 = sinkhorn(scores)
    out: dict = {"N": n, "K": 10, "classes": num_classes}
    for name, dtype in AMP_DTYPES.items():
        x = scores.to(dtype)
        tol = 4 * HALF_ULP_AT_1[name] / EPSILON
        for kind, fn, ref in (("batched", lambda s: sinkhorn_batched(s, labels, num_classes), ref_b),
                              ("single", sinkhorn, ref_1)):
            plan = fn(x)
            same = fn(x.float())
            rel = ((plan - ref).abs() / ref.clamp_min(1e-30)).max().item()
            agree = (plan.argmax(1) == ref.argmax(1)).float().mean().item()
            out[f"{kind}_{name}"] = {"dtype_out": str(plan.dtype),
                                     "vs_same_values_max_abs": (plan - same).abs().max().item(),
                                     "vs_fp32_max_abs": (plan - ref).abs().max().item(), "vs_fp32_max_rel": rel,
                                     "argmax_agreement": agree}
            rep.check(f"sinkhorn_{kind} {name} = fp32 of the same values (max abs)",
                      out[f"{kind}_{name}"]["vs_same_values_max_abs"], 1e-6,
                      "the low-precision input is computed in float32: only atomics' order may differ")
            rep.check(f"sinkhorn_{kind} {name} vs unrounded fp32 (max rel)", rel, tol,
                      f"4 u / epsilon, u = {HALF_ULP_AT_1[name]:.3g} (half-ulp at 1), epsilon = {EPSILON}")
            rep.check(f"sinkhorn_{kind} {name}: bits of the plan's dtype", torch.finfo(plan.dtype).bits, 32,
                      "the plan is float32 whatever the input", op="==")
    return out


def clustered_inputs(n: int, d: int, c: int, k: int, seed: int = 0):
    """Embeddings near one prototype of their class (cosine ~0.9), 10% labelled with another class (so
    the official 'correct pixels' filter drops them) and 5% unlabelled: no near-ties in any argmax."""
    g = torch.Generator().manual_seed(seed)
    protos = F.normalize(torch.randn(c, k, d, generator=g), dim=-1)
    cls = torch.randint(0, c, (n,), generator=g)
    which = torch.randint(0, k, (n,), generator=g)
    emb = F.normalize(protos[cls, which] + 0.5 / math.sqrt(d) * torch.randn(n, d, generator=g), dim=1)
    labels = cls.clone()
    wrong = torch.rand(n, generator=g) < 0.10
    labels[wrong] = (cls[wrong] + torch.randint(1, c, (int(wrong.sum()),), generator=g)) % c
    labels[torch.rand(n, generator=g) < 0.05] = 255
    return emb, protos, labels


def check_official_step(rep: Report, sizes: Sizes, device: torch.device) -> dict:
    e = sizes.equiv
    emb, protos, labels = clustered_inputs(e["N"], e["D"], e["C"], e["K"])
    cfg = MethodConfig.for_variant("official", num_prototypes=e["K"], update_assignment="argmax")
    with torch.no_grad():
        cpu = bps.our_step(emb, protos, labels, cfg)
        dev = bps.our_step(emb.to(device), protos.to(device), labels.to(device), cfg)
    diffs = {name: (a.float() - b.float().cpu()).abs().max().item()
             for name, a, b in zip(("prototypes", "ppc", "ppd"), cpu, dev)}
    for name, v in diffs.items():
        rep.check(f"official step {name}: {device.type} vs cpu (max abs)", v, DEVICE_VS_CPU_TOL,
                  "official variant, update by argmax instead of the Gumbel draw")
    rep.check("official step: prototypes unit-norm after the update", (dev[0].norm(dim=-1) - 1).abs().max().item(),
              UNIT_NORM_TOL, "max | ||p|| - 1 |")
    return {**e, "max_abs_diff": diffs, "matmul_tf32": _tf32_flags(),
            "note": "update_assignment=argmax: the CUDA and CPU generators draw different Gumbel noise"}


def check_ddp_syncbn(rep: Report, sizes: Sizes, device: torch.device) -> dict:
    small = ModelSpec("ddp", "hrnet_w18_small", "cityscapes", 19, sizes.ddp_crop, 2, sizes.ddp_crop, "sgd")
    cfg = model_config(small, "prototype", deterministic=True)
    torch.manual_seed(0)
    state = build_model(cfg).state_dict()
    batches = [synthetic_batch(i, 2, small.crop, small.num_classes, seed=7) for i in range(2)]

    def run(model):
        opt = build_optimizer(model, OptimConfig.preset("sgd"))
        scaler = torch.amp.GradScaler(device.type, enabled=False)
        return [float(train_step(model, opt, scaler, x.to(device), y.to(device), None, device)["total"].detach())
                for x, y in batches]

    plain = build_model(cfg)
    plain.load_state_dict(state)
    plain_losses = run(plain.to(device).train())
    backend = "nccl" if device.type == "cuda" else "gloo"
    out: dict = {"backend": backend, "world_size": 1, "model": small.backbone, "crop": list(small.crop),
                 "note": "world size 1: torch's SyncBatchNorm and CPUSyncBatchNorm take the local path; "
                         "the paper variant's Sinkhorn and update all-reduce through the group"}
    with tempfile.TemporaryDirectory() as tmp:
        kw = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, init_method=f"file://{tmp}/pg", rank=0, world_size=1, **kw)
        try:
            t = torch.tensor([1.0, 2.0], device=device)
            dist.all_reduce(t)
            out["all_reduce_error"] = (t.cpu() - torch.tensor([1.0, 2.0])).abs().max().item()
            model = build_model(cfg)
            model.load_state_dict(state)
            model, synced = maybe_sync_bn(model.to(device), DistInfo(device=device), "on")
            out["sync_bn_modules"] = sum(type(m).__name__ in ("SyncBatchNorm", "CPUSyncBatchNorm")
                                         for m in model.modules())
            ddp = torch.nn.parallel.DistributedDataParallel(
                model.train(), device_ids=[device.index or 0] if device.type == "cuda" else None,
                broadcast_buffers=False)
            ddp_losses = run(ddp)
        finally:
            dist.destroy_process_group()
    out.update(plain_losses=plain_losses, ddp_losses=ddp_losses)
    rel = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(ddp_losses, plain_losses))
    rep.check(f"ddp: {backend} all-reduce of [1, 2], max error", out["all_reduce_error"], 0.0, "world size 1")
    rep.check("ddp: SyncBN modules in the model", out["sync_bn_modules"], 1, "BatchNorm layers converted", op=">=")
    rep.check("ddp+SyncBN: non-finite losses", sum(not math.isfinite(v) for v in ddp_losses), 0, "2 iterations")
    rep.check("ddp+SyncBN loss vs plain model (max rel)", rel, 1e-4, "same weights and batches, 2 iterations")
    return out


def check_amp(rep: Report, sizes: Sizes, spec: ModelSpec, device: torch.device) -> dict:
    cfg = model_config(spec, "prototype", deterministic=True)
    torch.manual_seed(0)
    state = copy.deepcopy(build_model(cfg).state_dict())
    modes = ["fp32", "fp16", "bf16"]
    if device.type != "cuda":
        modes.remove("fp16")
        rep.skip(f"amp_{spec.name} fp16", "CPU: fp16 autocast is slow and partly unsupported on CPU; "
                                          "fp16 is checked on CUDA only")
    out: dict = {"model": spec.name, "backbone": spec.backbone, "crop": list(spec.crop), "batch": sizes.amp_batch,
                 "iters": sizes.amp_iters, "optim": spec.optim, "dropout": 0.0, "runs": {},
                 "loss_rtol": {m: AMP_LOSS_RTOL[m] for m in modes if m != "fp32"},
                 "fp32_reference": "TF32 off for matmuls and convolutions"}
    old = _set_tf32(False)
    try:
        for mode in modes:
            t0 = time.perf_counter()
            model = build_model(cfg)
            model.load_state_dict(state)
            model.to(device).train()
            opt = build_optimizer(model, OptimConfig.preset(spec.optim))
            scaler = torch.amp.GradScaler(device.type, enabled=mode == "fp16", init_scale=2.0 ** 12)
            amp = AMP_DTYPES.get(mode)
            torch.manual_seed(1)
            run: dict = {"terms": {}, "proto_norm_err": 0.0, "skipped_steps": 0}
            for i in range(sizes.amp_iters):
                x, y = synthetic_batch(i, sizes.amp_batch, spec.crop, spec.num_classes)
                scale = scaler.get_scale() if scaler.is_enabled() else 1.0
                terms = train_step(model, opt, scaler, x.to(device), y.to(device), amp, device)
                if scaler.is_enabled() and scaler.get_scale() < scale:
                    run["skipped_steps"] += 1
                for k, v in terms.items():
                    run["terms"].setdefault(k, []).append(float(v.detach().float()))
                protos = head_of(model).prototypes.float()
                run["proto_norm_err"] = max(run["proto_norm_err"], (protos.norm(dim=-1) - 1).abs().max().item())
            sync(device)
            run["seconds"] = time.perf_counter() - t0
            out["runs"][mode] = run
            bad = sum(not math.isfinite(v) for vs in run["terms"].values() for v in vs)
            rep.check(f"amp {spec.name} {mode}: non-finite loss terms", bad, 0,
                      f"over {sizes.amp_iters} iterations x {len(run['terms'])} terms")
            rep.check(f"amp {spec.name} {mode}: prototypes unit-norm", run["proto_norm_err"], UNIT_NORM_TOL,
                      "max over iterations of | ||p|| - 1 |")
            log(f"  {spec.name} {mode}: total loss {run['terms']['total'][0]:.4f} -> "
                f"{run['terms']['total'][-1]:.4f} in {run['seconds']:.1f} s")
            rep.partial(f"amp_{spec.name}", out)
            del model, opt
            release()
    finally:
        _set_tf32(*old)
    ref = out["runs"]["fp32"]["terms"]["total"]
    for mode in modes[1:]:
        cur = out["runs"][mode]["terms"]["total"]
        rel = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(cur, ref))
        out["runs"][mode]["total_max_rel_vs_fp32"] = rel
        out["runs"][mode]["total_first_iter_rel_vs_fp32"] = abs(cur[0] - ref[0]) / max(abs(ref[0]), 1e-12)
        rep.check(f"amp {spec.name} {mode}: total loss vs fp32 (max rel over {len(ref)} iterations)", rel,
                  AMP_LOSS_RTOL[mode], "same init and batches")
    return out


def _tf32_flags() -> dict:
    return {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}


def _set_tf32(matmul: bool, cudnn: bool | None = None) -> tuple[bool, bool]:
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = matmul
    torch.backends.cudnn.allow_tf32 = matmul if cudnn is None else cudnn
    return old


# ---- speed and memory ------------------------------------------------------------------------------
def measure_sinkhorn(rep: Report, sizes: Sizes, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    scores = (torch.rand(sizes.sinkhorn_n, 10, generator=g) * 2 - 1).to(device)
    ms = median_ms(lambda: sinkhorn(scores), sizes.sinkhorn_runs, 10, device)
    rep.target(f"sinkhorn {sizes.sinkhorn_n} x 10 (ms)", ms, 0.25, "<=", " ms",
               f"median of {sizes.sinkhorn_runs} runs; the paper states 2.5 ms for 10K x 10")
    return {"N": sizes.sinkhorn_n, "K": 10, "runs": sizes.sinkhorn_runs, "median_ms": ms,
            "paper_ms": 2.5, "paper_over_ours": 2.5 / ms}


def measure_prototype_step(rep: Report, sizes: Sizes, device: torch.device) -> dict:
    s = sizes.step
    dev = str(device)
    rows = []
    for c in s["C"]:
        emb, protos, labels = bps.make_inputs(s["N"], s["D"], c, s["K"], dev)
        cfg = MethodConfig.for_variant("official", num_prototypes=s["K"])
        fns = {"loop": lambda: bps.loop_step(emb, protos, labels),
               "ours": lambda: bps.our_step(emb, protos, labels, cfg)}
        row: dict = {"C": c}
        with torch.no_grad():
            for name, fn in fns.items():
                row[f"{name}_ms"] = bps.median_time(fn, s["runs"], dev, warmup=1) * 1e3
                with PeakMemory(device) as peak:  # after the warm-up: library workspaces exist already
                    fn()
                row[f"{name}_peak_gib"] = peak.gib
        row["speedup"] = row["loop_ms"] / row["ours_ms"]
        rows.append(row)
        log(f"  prototype step C={c}: loop {row['loop_ms']:.1f} ms, ours {row['ours_ms']:.1f} ms")
        rep.partial("prototype_step", {"rows": rows})
        del emb, protos, labels, fns
        release()
    by_c = {r["C"]: r for r in rows}
    for c, need in ((150, 20.0), (847, 40.0)):
        rep.target(f"prototype step speed-up at C={c}", by_c[c]["speedup"] if c in by_c else None, need, ">=", "x",
                   "release loop / ours, official variant, forward")
    r = by_c.get(847)
    mem = r["ours_peak_gib"] / r["loop_peak_gib"] if r and r["loop_peak_gib"] else None
    rep.target("prototype step peak memory at C=847, ours / loop", mem, 1 / 3, "<=", "",
               "peak allocated above inputs",
               missing=NO_PEAK if device.type == "cpu" else "C=847 not measured")
    return {"N": s["N"], "D": s["D"], "K": s["K"], "runs": s["runs"], "rows": rows}


def measure_training(rep: Report, sizes: Sizes, spec: ModelSpec, device: torch.device) -> dict:
    """Step time and peak memory, prototype vs softmax head, fp32 (MMSegmentation's figures are fp32)."""
    out: dict = {"model": spec.name, "backbone": spec.backbone, "crop": list(spec.crop), "batch": spec.perf_batch,
                 "precision": "fp32 (TF32 as torch's defaults)", "heads": {}}

    def measure(head: str, batch: int, iters: int) -> dict:
        torch.manual_seed(0)
        batches = [synthetic_batch(i, batch, spec.crop, spec.num_classes, seed=3) for i in range(2)]
        batches = [(x.to(device), y.to(device)) for x, y in batches]
        scaler = torch.amp.GradScaler(device.type, enabled=False)
        with PeakMemory(device) as peak:
            model = build_model(model_config(spec, head, deterministic=False)).to(device).train()
            opt = build_optimizer(model, OptimConfig.preset(spec.optim))
            it = iter(range(10**9))

            def step():
                x, y = batches[next(it) % 2]
                train_step(model, opt, scaler, x, y, None, device)
            ms = median_ms(step, iters, sizes.perf_warmup, device)
        del model, opt, step
        release()
        return {"step_ms": ms, "peak_gib": peak.gib}

    for head in ("softmax", "prototype"):
        out["heads"][head] = measure(head, spec.perf_batch, sizes.perf_iters)
        r = out["heads"][head]
        log(f"  train {spec.name} {head}: {r['step_ms']:.1f} ms, peak {_fmt(r['peak_gib'])} GiB")
        rep.partial(f"train_{spec.name}", out)
    s, p = out["heads"]["softmax"], out["heads"]["prototype"]
    out["step_ratio"] = p["step_ms"] / s["step_ms"]
    out["peak_ratio"] = p["peak_gib"] / s["peak_gib"] if s["peak_gib"] else None
    rep.target(f"{spec.name} train step, prototype / softmax", out["step_ratio"], 1.10, "<=", "",
               f"batch {spec.perf_batch}, crop {spec.crop[0]}x{spec.crop[1]}, median after warm-up")
    rep.target(f"{spec.name} train peak memory, prototype / softmax", out["peak_ratio"], 1.10, "<=", "",
               "peak allocated (params, grads, optimizer state, activations)", missing=NO_PEAK)
    if spec.mmseg_gib is not None:
        mm = s if spec.mmseg_batch == spec.perf_batch else measure("softmax", spec.mmseg_batch, 2)
        out["mmseg"] = {"reference": spec.mmseg_ref, "gb": spec.mmseg_gib, "batch": spec.mmseg_batch,
                        "ours_gib": mm["peak_gib"]}
        dev = abs(mm["peak_gib"] / spec.mmseg_gib - 1) if mm["peak_gib"] is not None else None
        out["mmseg"]["rel_dev"] = dev
        rep.target(f"{spec.name} softmax peak vs MMSegmentation {spec.mmseg_gib} GB (|rel. dev.|)", dev, 0.10, "<=",
                   "", f"{spec.mmseg_batch} images, MMSeg's GB = max_memory_allocated / 2^30", missing=NO_PEAK)
    return out


def measure_latency(rep: Report, sizes: Sizes, spec: ModelSpec, device: torch.device) -> dict:
    models = {}
    torch.manual_seed(0)
    for head in ("softmax", "prototype"):
        models[head] = build_model(model_config(spec, head, deterministic=False)).to(device).eval()
    x = torch.randn(1, 3, *spec.infer_size, device=device)
    ms: dict[str, list[float]] = {h: [] for h in models}
    with torch.inference_mode():
        for h, m in models.items():
            median_ms(lambda: m.predict(x), 1, sizes.latency_warmup, device)  # warm-up
        for _ in range(sizes.latency_reps):  # alternate, so drifts hit both heads
            for h, m in models.items():
                ms[h].append(median_ms(lambda: m.predict(x), 1, 0, device))
    med = {h: statistics.median(v) for h, v in ms.items()}
    ratio = med["prototype"] / med["softmax"]
    rep.target(f"{spec.name} inference latency, prototype / softmax", ratio, 1.02, "<=", "",
               f"batch 1, {spec.infer_size[0]}x{spec.infer_size[1]}, upsampled scores")
    del models
    release()
    return {"model": spec.name, "size": list(spec.infer_size), "reps": sizes.latency_reps, "ms": med, "ratio": ratio}


def mini_run_command(out: Path) -> list[str]:
    exe = Path(sys.executable).with_name("snakemake")
    return [str(exe) if exe.exists() else "snakemake", "-c1", "tables", "--config",
            f"runs_dir={out / 'mini_run' / 'runs'}", f"results_dir={out / 'mini_run' / 'results'}"]


def measure_mini_run(rep: Report, out: Path, enabled: bool, timeout: float) -> dict:
    cmd = mini_run_command(out.resolve())
    row: dict = {"command": " ".join(cmd), "cwd": str(Path(__file__).resolve().parents[1])}
    if not enabled:
        rep.skip("mini_run", "not requested (--mini-run); run the command by hand and time it")
        return {**row, "measured": False}
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=row["cwd"])  # the rules call the `protoseg` command of this environment
    log(f"mini run: {row['command']}")
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=row["cwd"], capture_output=True, text=True, timeout=timeout, env=env)
        row.update(returncode=proc.returncode, stderr_tail=proc.stderr[-2000:])
    except subprocess.TimeoutExpired:
        row.update(returncode=None, timed_out=True)
    row.update(measured=row.get("returncode") == 0, wall_s=time.perf_counter() - t)
    # the device the training runs used (the engine takes CUDA whenever it is available)
    infos = (out / "mini_run" / "runs").rglob("run_info.json")
    row["run_devices"] = sorted({json.loads(p.read_text()).get("device", "?") for p in infos})
    return row


# ---- main ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--tiny", action="store_true", help="tiny sizes (small backbones, tiny crops): a CPU test")
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    p.add_argument("--iters", type=int, default=None, help="AMP check iterations (default 20)")
    p.add_argument("--sections", default="all", help="comma-separated subset of: " + ", ".join(SECTIONS))
    p.add_argument("--budget-s", type=float, default=480.0, help="skip the sections left after this many seconds")
    p.add_argument("--mini-run", action="store_true", help="also time the mini reproduction (outside the budget)")
    p.add_argument("--mini-run-timeout-s", type=float, default=3600.0)
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "0")) or None)
    args = p.parse_args(argv)
    wanted = list(SECTIONS) if args.sections == "all" else [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        p.error(f"--sections: unknown {unknown}; expected a subset of {', '.join(SECTIONS)}")
    if args.iters is not None and args.iters < 1:
        p.error(f"--iters={args.iters}: expected an integer >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch.cuda.is_available() is False (this torch: "
                f"{torch.__version__}); use --device cpu --tiny for the CPU smoke test")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda", torch.cuda.current_device()) if args.device == "cuda" else torch.device("cpu")
    sizes = TINY if args.tiny else PAPER
    if args.iters is not None:
        sizes = Sizes(**{**sizes.__dict__, "amp_iters": args.iters})
    judged = device.type == "cuda" and not args.tiny
    why_not = ("tiny sizes on cpu" if device.type == "cpu" and args.tiny else "tiny sizes" if args.tiny
               else "cpu: the targets are for a GPU")
    meta = {"command": " ".join(["python", "benchmarks/gpu_check.py", *(argv if argv is not None else sys.argv[1:])]),
            "device": str(device), "tiny": args.tiny, "torch": torch.__version__, "cuda": torch.version.cuda,
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)",
            "git_commit": git_commit(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "budget_s": args.budget_s, "sizes": _jsonable(sizes.__dict__), "tf32_defaults": _tf32_flags(),
            "cudnn_benchmark": torch.backends.cudnn.benchmark}
    rep = Report(args.out, meta, judged, why_not)
    rep.save()
    t0 = time.perf_counter()
    jobs: list[tuple[str, Callable[[], dict]]] = [
        ("sinkhorn_dtypes", lambda: check_sinkhorn_dtypes(rep, sizes, device)),
        ("official_step", lambda: check_official_step(rep, sizes, device)),
        ("ddp_syncbn", lambda: check_ddp_syncbn(rep, sizes, device)),
    ]
    for spec in sizes.models:
        jobs.append((f"amp_{spec.name}", lambda spec=spec: check_amp(rep, sizes, spec, device)))
    jobs += [("sinkhorn_speed", lambda: measure_sinkhorn(rep, sizes, device)),
             ("prototype_step", lambda: measure_prototype_step(rep, sizes, device))]
    for spec in sizes.models:
        jobs.append((f"train_{spec.name}", lambda spec=spec: measure_training(rep, sizes, spec, device)))
    for spec in sizes.models:
        jobs.append((f"latency_{spec.name}", lambda spec=spec: measure_latency(rep, sizes, spec, device)))
    for name, job in jobs:
        if _section_of(name) not in wanted:
            continue
        if time.perf_counter() - t0 > args.budget_s:
            rep.skip(name, f"time budget of {args.budget_s:.0f} s spent")
            continue
        log(f"{name} ...")
        t = time.perf_counter()
        try:
            result = {"status": "ok", **job()}
        except Exception as err:  # record, keep the other sections
            traceback.print_exc()
            result = {"status": "error", "error": f"{type(err).__name__}: {err}"}
        result["seconds"] = time.perf_counter() - t
        rep.data["sections"][name] = result
        rep.data["elapsed_s"] = time.perf_counter() - t0
        rep.save()
        log(f"{name}: {result['status']} in {result['seconds']:.1f} s")
    if "mini_run" in wanted:
        rep.data["sections"]["mini_run"] = measure_mini_run(rep, args.out, args.mini_run, args.mini_run_timeout_s)
    failed = [c["name"] for c in rep.data["checks"] if not c["passed"]]
    errors = [k for k, v in rep.data["sections"].items() if v.get("status") == "error"]
    rep.data.update(status="complete", elapsed_s=time.perf_counter() - t0, failed_checks=failed, errors=errors)
    rep.save()
    log(f"done in {rep.data['elapsed_s']:.0f} s: {len(rep.data['checks']) - len(failed)}/{len(rep.data['checks'])} "
        f"checks passed; errors: {errors or 'none'}; wrote {args.out / 'gpu.json'} and {args.out / 'gpu.md'}")
    return 1 if failed or errors else 0


SECTIONS = ("sinkhorn_dtypes", "official_step", "ddp_syncbn", "amp", "sinkhorn_speed", "prototype_step",
            "train", "latency", "mini_run")


def _section_of(job: str) -> str:
    return job.split("_")[0] if job.startswith(("amp_", "train_", "latency_")) else job


def _finite(x):
    """Strict JSON: non-finite floats become null (a check's ``passed`` already says false)."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "__dataclass_fields__"):
        return _jsonable(x.__dict__)
    return x


if __name__ == "__main__":
    raise SystemExit(main())
