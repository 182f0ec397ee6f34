"""The GPU correctness checks, each a function of (sizes, device) that returns what it measured and
its checks (value, tolerance); run on CUDA at paper sizes by ``tests/test_gpu_correctness.py``
(marker ``gpu``) and on CPU at tiny sizes by ``tests/test_gpu_check.py``.

- ``sinkhorn_dtypes``: ``sinkhorn`` / ``sinkhorn_batched`` on fp16 and bf16 scores equal the float32
  plan of the same (rounded) values, and the float32 plan of the unrounded scores within the bound
  set by the input rounding (relative error <= 4 u / epsilon, u the half-ulp at 1 of the dtype).
- ``official_step``: the official variant's prototype step (``bench_prototype_step.our_step``) on the
  device equals the CPU's to 1e-5 (the Gumbel draw is replaced by the argmax: the CUDA and CPU
  generators draw different noise).
- ``ddp_syncbn``: a 1-process NCCL (CUDA) / gloo (CPU) group starts, all-reduces, and a DDP model with
  synchronised BatchNorm trains 2 iterations to the losses of the plain model.
- ``amp``: a paper model with the prototype head, batch 2: ``amp_iters`` training iterations in fp32,
  fp16 (CUDA only) and bf16 autocast from the same weights and batches; every loss finite, AMP total
  losses within a relative tolerance of fp32, prototypes unit-norm to 1e-5.
"""
from __future__ import annotations

import copy
import math
import sys
import tempfile
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

from engine_helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))  # benchmarks/ is not a package
import bench_prototype_step as bps  # noqa: E402
from _timing import release, sync  # noqa: E402
from gpu_workloads import ModelSpec, Sizes, model_config, set_tf32, synthetic_batch, tf32_flags, train_step  # noqa: E402

from protoseg.config import OptimConfig  # noqa: E402
from protoseg.engine.distributed import DistInfo, maybe_sync_bn  # noqa: E402
from protoseg.engine.optim import build_optimizer  # noqa: E402
from protoseg.method import MethodConfig, sinkhorn, sinkhorn_batched  # noqa: E402
from protoseg.models import build_model  # noqa: E402

EPSILON = 0.05  # Sinkhorn's kappa (Eq. 9)
HALF_ULP_AT_1 = {"fp16": 2.0 ** -12, "bf16": 2.0 ** -9}  # input rounding of scores in [-1, 1]
AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
# relative deviation of an AMP run's total loss from fp32's, at every one of the iterations
AMP_LOSS_RTOL = {"fp16": 0.02, "bf16": 0.05}
UNIT_NORM_TOL = 1e-5
DEVICE_VS_CPU_TOL = 1e-5


@dataclass(frozen=True)
class Check:
    """One correctness check: ``value`` finite and ``value <op> tolerance``."""

    name: str
    value: float
    tolerance: float
    what: str
    op: str = "<="

    @property
    def passed(self) -> bool:
        v = float(self.value)
        return math.isfinite(v) and {"<=": v <= self.tolerance, ">=": v >= self.tolerance,
                                     "==": v == self.tolerance}[self.op]


def failures(checks: list[Check]) -> list[str]:
    """The failed checks, one line each (empty: all passed)."""
    return [f"{c.name}: {c.value!r} not {c.op} {c.tolerance!r} ({c.what})" for c in checks if not c.passed]


def sinkhorn_dtypes(sizes: Sizes, device: torch.device) -> tuple[dict, list[Check]]:
    g = torch.Generator().manual_seed(0)
    n, num_classes = sizes.sinkhorn_n, 19
    scores = (torch.rand(n, 10, generator=g) * 2 - 1).to(device)  # cosines spread over [-1, 1]: the hard case
    labels = torch.randint(0, num_classes, (n,), generator=g).to(device)
    ref_b = sinkhorn_batched(scores, labels, num_classes)
    ref_1 = sinkhorn(scores)
    out: dict = {"N": n, "K": 10, "classes": num_classes}
    checks: list[Check] = []
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
            checks += [
                Check(f"sinkhorn_{kind} {name} = fp32 of the same values (max abs)",
                      out[f"{kind}_{name}"]["vs_same_values_max_abs"], 1e-6,
                      "the low-precision input is computed in float32: only atomics' order may differ"),
                Check(f"sinkhorn_{kind} {name} vs unrounded fp32 (max rel)", rel, tol,
                      f"4 u / epsilon, u = {HALF_ULP_AT_1[name]:.3g} (half-ulp at 1), epsilon = {EPSILON}"),
                Check(f"sinkhorn_{kind} {name}: bits of the plan's dtype", torch.finfo(plan.dtype).bits, 32,
                      "the plan is float32 whatever the input", op="=="),
            ]
    return out, checks


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


def official_step(sizes: Sizes, device: torch.device) -> tuple[dict, list[Check]]:
    e = sizes.equiv
    emb, protos, labels = clustered_inputs(e["N"], e["D"], e["C"], e["K"])
    cfg = MethodConfig.for_variant("official", update_assignment="argmax")
    with torch.no_grad():
        cpu = bps.our_step(emb, protos, labels, cfg)
        dev = bps.our_step(emb.to(device), protos.to(device), labels.to(device), cfg)
    diffs = {name: (a.float() - b.float().cpu()).abs().max().item()
             for name, a, b in zip(("prototypes", "ppc", "ppd"), cpu, dev)}
    checks = [Check(f"official step {name}: {device.type} vs cpu (max abs)", v, DEVICE_VS_CPU_TOL,
                    "official variant, update by argmax instead of the Gumbel draw") for name, v in diffs.items()]
    checks.append(Check("official step: prototypes unit-norm after the update",
                        (dev[0].norm(dim=-1) - 1).abs().max().item(), UNIT_NORM_TOL, "max | ||p|| - 1 |"))
    return {**e, "max_abs_diff": diffs, "matmul_tf32": tf32_flags(),
            "note": "update_assignment=argmax: the CUDA and CPU generators draw different Gumbel noise"}, checks


def ddp_syncbn(sizes: Sizes, device: torch.device) -> tuple[dict, list[Check]]:
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
    return out, [
        Check(f"ddp: {backend} all-reduce of [1, 2], max error", out["all_reduce_error"], 0.0, "world size 1"),
        Check("ddp: SyncBN modules in the model", out["sync_bn_modules"], 1, "BatchNorm layers converted", op=">="),
        Check("ddp+SyncBN: non-finite losses", sum(not math.isfinite(v) for v in ddp_losses), 0, "2 iterations"),
        Check("ddp+SyncBN loss vs plain model (max rel)", rel, 1e-4, "same weights and batches, 2 iterations"),
    ]


def amp_modes(device: torch.device) -> list[str]:
    """fp32, fp16 and bf16; fp16 on CUDA only (CPU fp16 autocast is slow and partly unsupported)."""
    return ["fp32", "fp16", "bf16"] if device.type == "cuda" else ["fp32", "bf16"]


def amp(sizes: Sizes, spec: ModelSpec, device: torch.device) -> tuple[dict, list[Check]]:
    cfg = model_config(spec, "prototype", deterministic=True)
    torch.manual_seed(0)
    state = copy.deepcopy(build_model(cfg).state_dict())
    modes = amp_modes(device)
    out: dict = {"model": spec.name, "backbone": spec.backbone, "crop": list(spec.crop), "batch": sizes.amp_batch,
                 "iters": sizes.amp_iters, "optim": spec.optim, "dropout": 0.0, "runs": {},
                 "loss_rtol": {m: AMP_LOSS_RTOL[m] for m in modes if m != "fp32"},
                 "fp32_reference": "TF32 off for matmuls and convolutions"}
    checks: list[Check] = []
    old = set_tf32(False)
    try:
        for mode in modes:
            run = _amp_run(sizes, spec, device, cfg, state, mode)
            out["runs"][mode] = run
            bad = sum(not math.isfinite(v) for vs in run["terms"].values() for v in vs)
            checks += [Check(f"amp {spec.name} {mode}: non-finite loss terms", bad, 0,
                             f"over {sizes.amp_iters} iterations x {len(run['terms'])} terms"),
                       Check(f"amp {spec.name} {mode}: prototypes unit-norm", run["proto_norm_err"], UNIT_NORM_TOL,
                             "max over iterations of | ||p|| - 1 |")]
    finally:
        set_tf32(*old)
    ref = out["runs"]["fp32"]["terms"]["total"]
    for mode in modes[1:]:
        cur = out["runs"][mode]["terms"]["total"]
        rel = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(cur, ref))
        out["runs"][mode]["total_max_rel_vs_fp32"] = rel
        out["runs"][mode]["total_first_iter_rel_vs_fp32"] = abs(cur[0] - ref[0]) / max(abs(ref[0]), 1e-12)
        checks.append(Check(f"amp {spec.name} {mode}: total loss vs fp32 (max rel over {len(ref)} iterations)", rel,
                            AMP_LOSS_RTOL[mode], "same init and batches"))
    return out, checks


def _amp_run(sizes: Sizes, spec: ModelSpec, device: torch.device, cfg, state: dict, mode: str) -> dict:
    """``sizes.amp_iters`` training iterations in ``mode`` from ``state``: the loss terms of every
    iteration, the prototypes' largest distance from unit norm, the steps fp16's scaler skipped."""
    t0 = time.perf_counter()
    model = build_model(cfg)
    model.load_state_dict(state)
    model.to(device).train()
    opt = build_optimizer(model, OptimConfig.preset(spec.optim))
    scaler = torch.amp.GradScaler(device.type, enabled=mode == "fp16", init_scale=2.0 ** 12)
    torch.manual_seed(1)
    run: dict = {"terms": {}, "proto_norm_err": 0.0, "skipped_steps": 0}
    for i in range(sizes.amp_iters):
        x, y = synthetic_batch(i, sizes.amp_batch, spec.crop, spec.num_classes)
        scale = scaler.get_scale() if scaler.is_enabled() else 1.0
        terms = train_step(model, opt, scaler, x.to(device), y.to(device), AMP_DTYPES.get(mode), device)
        if scaler.is_enabled() and scaler.get_scale() < scale:
            run["skipped_steps"] += 1
        for k, v in terms.items():
            run["terms"].setdefault(k, []).append(float(v.detach().float()))
        protos = model.head.prototypes.float()
        run["proto_norm_err"] = max(run["proto_norm_err"], (protos.norm(dim=-1) - 1).abs().max().item())
    sync(device)
    run["seconds"] = time.perf_counter() - t0
    del model, opt
    release()
    return run
