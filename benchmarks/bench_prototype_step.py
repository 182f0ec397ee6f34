"""One prototype training step: ours (vectorised, chunked) against the official release's structure.

The release's structure (``protoseg.reference.official``): the einsum forward for class scores, then
``prototype_learning`` with a Python loop over classes and a second ``[N, C*K]`` matrix product for the
PPC logits, then PPC (cross-entropy over ``[N, C*K]``) and PPD. Ours: ``prototype_scores`` (one chunked
pass: class scores, Sinkhorn input, PPC normaliser) then ``prototype_learning`` (batched Sinkhorn,
one index_add update, PPC and PPD from the same similarities). Both run the official variant
(Gumbel update from correct pixels, tau = 1), forward only, from the same l2-normalised embeddings.

Reported per C, median of ``--runs`` runs:
- ``step``: the whole step above (scores + Sinkhorn + update + PPC + PPD);
- ``scores``: the Eq. 6 class scores alone, which inference needs too (einsum + amax / our pass
  without labels);
- ``overhead`` = step - scores: what training adds on top of inference;
- peak resident memory of a fresh process running one step, and its increase over the inputs.

    python benchmarks/bench_prototype_step.py                     # N=131072, D=720, K=10, C=19,150,847
    python benchmarks/bench_prototype_step.py --device cuda       # GPU: also Sinkhorn 10K x 10
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from _timing import median_time  # benchmarks/, the script's folder
from protoseg.method import MethodConfig, prototype_learning, prototype_scores, sinkhorn
from protoseg.reference import official as ref


def make_inputs(n: int, d: int, c: int, k: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(n, d, generator=g), dim=1).to(device)
    protos = F.normalize(torch.randn(c, k, d, generator=g), dim=-1).to(device)
    labels = torch.randint(0, c, (n,), generator=g)
    labels[torch.rand(n, generator=g) < 0.05] = 255  # a few unlabelled pixels
    return emb, protos, labels.to(device)


def loop_scores(emb, protos):
    masks = torch.einsum("nd,kmd->nmk", emb, protos)
    return torch.amax(masks, dim=1), masks


def loop_step(emb, protos, labels):
    c, k, _ = protos.shape
    n = emb.shape[0]
    out_seg, masks = ref.head_forward(emb, protos, lambda x: x, 1, 1, n)
    gt_seg = labels.float().masked_fill(labels == 255, -1)
    logits, target, new = ref.prototype_learning(emb, out_seg, gt_seg, masks, protos, c, k)
    ppc = F.cross_entropy(logits, target.long(), ignore_index=-1)
    keep = target != -1
    ppd = (1 - torch.gather(logits[keep, :], 1, target[keep][:, None].long())).pow(2).mean()
    return new, ppc, ppd


def our_scores(emb, protos, cfg):
    return prototype_scores(emb, protos, distance=cfg.distance, max_chunk_elements=cfg.max_chunk_elements)


def our_step(emb, protos, labels, cfg):
    s = prototype_scores(emb, protos, labels, ppc_temperature=cfg.ppc_temperature,
                         max_chunk_elements=cfg.max_chunk_elements)
    res = prototype_learning(s, emb, labels, protos, cfg, predictions=s.class_sim.argmax(1))
    return res.prototypes, res.ppc, res.ppd


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field} (Linux only)")


def measure_memory(impl: str, args) -> dict:
    """Run in a fresh process: peak resident memory during one step (CPU, Linux).

    The inputs are created first; then the peak (VmHWM) is reset through /proc/self/clear_refs, so
    the reported peak is that of the step with its inputs resident, not of creating the inputs.
    """
    import gc

    torch.set_num_threads(args.threads)
    emb, protos, labels = make_inputs(args.pixels, args.dim, args.classes, args.k, "cpu")
    cfg = MethodConfig.for_variant("official")
    gc.collect()
    base = _status_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS counter
    with torch.no_grad():
        if impl == "loop":
            loop_step(emb, protos, labels)
        else:
            our_step(emb, protos, labels, cfg)
    peak = _status_mb("VmHWM")
    return {"peak_mb": peak, "increase_mb": peak - base}


def memory_in_subprocess(impl: str, c: int, args) -> dict:
    cmd = [sys.executable, __file__, "--memory-only", impl, "--classes", str(c), "--pixels", str(args.pixels),
           "--dim", str(args.dim), "--k", str(args.k), "--threads", str(args.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def check_equivalence(args) -> None:
    """Before timing: both implementations give the same update and losses (C = 19, same RNG)."""
    emb, protos, labels = make_inputs(8192, 64, 19, args.k, "cpu", seed=1)
    cfg = MethodConfig.for_variant("official")
    torch.manual_seed(0)
    a = loop_step(emb, protos, labels)
    torch.manual_seed(0)
    b = our_step(emb, protos, labels, cfg)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)


def gpu_figures(args) -> dict:
    dev = args.device
    scores = torch.rand(10_000, 10, device=dev) * 2 - 1
    t_sink = median_time(lambda: sinkhorn(scores), max(args.runs, 20), dev, warmup=3)
    emb, protos, labels = make_inputs(args.pixels, args.dim, 150, args.k, dev)
    cfg = MethodConfig.for_variant("official")
    with torch.no_grad():
        t_ours = median_time(lambda: our_step(emb, protos, labels, cfg), args.runs, dev, warmup=2)
        t_loop = median_time(lambda: loop_step(emb, protos, labels), args.runs, dev, warmup=2)
    return {"sinkhorn_10k_x_10_ms": t_sink * 1e3, "step_c150_ours_ms": t_ours * 1e3,
            "step_c150_loop_ms": t_loop * 1e3}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="19,150,847")
    p.add_argument("--pixels", type=int, default=131072)
    p.add_argument("--dim", type=int, default=720)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="results/benchmarks/prototype_step.json")
    p.add_argument("--memory-only", choices=["loop", "ours"])
    p.add_argument("--classes", type=int, default=150)
    args = p.parse_args()
    if args.memory_only:
        print(json.dumps(measure_memory(args.memory_only, args)))
        return
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        result = {"device": torch.cuda.get_device_name(), **gpu_figures(args)}
        print(json.dumps(result, indent=2))
    else:
        check_equivalence(args)
        rows = []
        for c in [int(s) for s in args.sizes.split(",")]:
            emb, protos, labels = make_inputs(args.pixels, args.dim, c, args.k, "cpu")
            cfg = MethodConfig.for_variant("official")
            fns = {"loop_step": lambda: loop_step(emb, protos, labels),
                   "ours_step": lambda: our_step(emb, protos, labels, cfg),
                   "loop_scores": lambda: loop_scores(emb, protos),
                   "ours_scores": lambda: our_scores(emb, protos, cfg)}
            with torch.no_grad():
                t = {name: median_time(fn, args.runs, "cpu") for name, fn in fns.items()}
                cpu = {name: median_time(fn, args.runs, "cpu", clock=time.process_time)
                       for name, fn in fns.items()}
            del emb, protos, labels
            mem = {impl: memory_in_subprocess(impl, c, args) for impl in ("loop", "ours")}
            row = {"C": c, **{k: round(v, 4) for k, v in t.items()},
                   **{f"{k}_cpu": round(v, 4) for k, v in cpu.items()},
                   "speedup_step_cpu": round(cpu["loop_step"] / cpu["ours_step"], 2),
                   "speedup_step": round(t["loop_step"] / t["ours_step"], 2),
                   "loop_overhead": round(t["loop_step"] - t["loop_scores"], 4),
                   "ours_overhead": round(t["ours_step"] - t["ours_scores"], 4),
                   "loop_peak_mb": round(mem["loop"]["peak_mb"]), "ours_peak_mb": round(mem["ours"]["peak_mb"]),
                   "loop_increase_mb": round(mem["loop"]["increase_mb"]),
                   "ours_increase_mb": round(mem["ours"]["increase_mb"])}
            row["speedup_overhead"] = round(row["loop_overhead"] / max(row["ours_overhead"], 1e-9), 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
        result = {"device": f"cpu, {args.threads} threads", "N": args.pixels, "D": args.dim, "K": args.k,
                  "runs": args.runs, "rows": rows}
        print()
        print("| C | release loop step (s) | ours step (s) | speed-up (wall / CPU time) | loop overhead (s) "
              "| ours overhead (s) | overhead speed-up | loop peak MB | ours peak MB |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['C']} | {r['loop_step']:.2f} | {r['ours_step']:.2f} | {r['speedup_step']:.1f}x / "
                  f"{r['speedup_step_cpu']:.1f}x | {r['loop_overhead']:.2f} | {r['ours_overhead']:.3f} "
                  f"| {r['speedup_overhead']:.0f}x | {r['loop_peak_mb']} | {r['ours_peak_mb']} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
