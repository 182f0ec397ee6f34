"""GPU speed and memory of the prototype head: Sinkhorn, the prototype step, training and inference of
the paper models against the softmax head, and (optionally) the mini reproduction's wall time.

One script, one device, at most 8 minutes on an H200 by construction (few iterations, warm-up then
medians, a time budget checked before every section). It writes ``gpu.json`` (rewritten after every
section, so a timeout still leaves the finished sections) and ``gpu.md`` into ``--out``
(``gpu_report.py``); the timing harness is ``_timing.py``, the models and sizes ``gpu_workloads.py``.
The correctness of the CUDA path (AMP, Sinkhorn in low precision, the official step against the CPU,
NCCL with SyncBN) is a pytest suite: ``pytest -m gpu tests/test_gpu_correctness.py``.

Each target gets ``met``: true / false, or null with the reason when not judged (on CPU or at
``--tiny`` sizes):
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

The exit status is 1 if a section raises (the error is recorded and the other sections still run);
a missed target does not change it.

    python benchmarks/gpu_check.py --device cuda --out results/benchmarks
    python benchmarks/gpu_check.py --device cpu --tiny --out /tmp/gpu_check      # CPU smoke
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here downloads; fail fast if something tries

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
import bench_prototype_step as bps  # noqa: E402
from _timing import PeakMemory, median_ms, median_time, release  # noqa: E402
from gpu_report import Report, fmt  # noqa: E402
from gpu_workloads import PAPER, TINY, ModelSpec, Sizes, model_config, synthetic_batch, tf32_flags, train_step  # noqa: E402

from protoseg.config import OptimConfig  # noqa: E402
from protoseg.engine.optim import build_optimizer  # noqa: E402
from protoseg.engine.provenance import git_commit  # noqa: E402
from protoseg.method import MethodConfig, sinkhorn  # noqa: E402
from protoseg.models import build_model  # noqa: E402

NO_PEAK = "cpu: peak allocated memory is a CUDA caching-allocator figure"
SECTIONS = ("sinkhorn_speed", "prototype_step", "train", "latency", "mini_run")


def log(msg: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}", flush=True)


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
        cfg = MethodConfig.for_variant("official")
        fns = {"loop": lambda: bps.loop_step(emb, protos, labels),
               "ours": lambda: bps.our_step(emb, protos, labels, cfg)}
        row: dict = {"C": c}
        with torch.no_grad():
            for name, fn in fns.items():
                row[f"{name}_ms"] = median_time(fn, s["runs"], dev, warmup=1) * 1e3
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
        log(f"  train {spec.name} {head}: {r['step_ms']:.1f} ms, peak {fmt(r['peak_gib'])} GiB")
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
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--tiny", action="store_true", help="tiny sizes (small backbones, tiny crops): a CPU test")
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    p.add_argument("--sections", default="all", help="comma-separated subset of: " + ", ".join(SECTIONS))
    p.add_argument("--budget-s", type=float, default=480.0, help="skip the sections left after this many seconds")
    p.add_argument("--mini-run", action="store_true", help="also time the mini reproduction (outside the budget)")
    p.add_argument("--mini-run-timeout-s", type=float, default=3600.0)
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "0")) or None)
    args = p.parse_args(argv)
    args.wanted = (list(SECTIONS) if args.sections == "all"
                   else [s.strip() for s in args.sections.split(",") if s.strip()])
    unknown = sorted(set(args.wanted) - set(SECTIONS))
    if unknown:
        p.error(f"--sections: unknown {unknown}; expected a subset of {', '.join(SECTIONS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch.cuda.is_available() is False (this torch: "
                f"{torch.__version__}); use --device cpu --tiny for the CPU smoke test")
    return args


def meta_of(args: argparse.Namespace, argv: list[str] | None, device: torch.device, sizes: Sizes) -> dict:
    """What the report says about the run: command, device, versions, sizes, TF32 defaults."""
    return {"command": " ".join(["python", "benchmarks/gpu_check.py", *(argv if argv is not None else sys.argv[1:])]),
            "device": str(device), "tiny": args.tiny, "torch": torch.__version__, "cuda": torch.version.cuda,
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)",
            "git_commit": git_commit(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "budget_s": args.budget_s, "sizes": _jsonable(sizes.__dict__), "tf32_defaults": tf32_flags(),
            "cudnn_benchmark": torch.backends.cudnn.benchmark}


def jobs_of(rep: Report, sizes: Sizes, device: torch.device) -> list[tuple[str, Callable[[], dict]]]:
    """The timed sections in order: (name, measurement)."""
    jobs: list[tuple[str, Callable[[], dict]]] = [
        ("sinkhorn_speed", lambda: measure_sinkhorn(rep, sizes, device)),
        ("prototype_step", lambda: measure_prototype_step(rep, sizes, device))]
    for spec in sizes.models:
        jobs.append((f"train_{spec.name}", lambda spec=spec: measure_training(rep, sizes, spec, device)))
    for spec in sizes.models:
        jobs.append((f"latency_{spec.name}", lambda spec=spec: measure_latency(rep, sizes, spec, device)))
    return jobs


def run_jobs(rep: Report, jobs: list[tuple[str, Callable[[], dict]]], wanted: list[str], budget_s: float,
             t0: float) -> None:
    """Run the wanted sections while the budget lasts; an error is recorded and the rest still run."""
    for name, job in jobs:
        if _section_of(name) not in wanted:
            continue
        if time.perf_counter() - t0 > budget_s:
            rep.skip(name, f"time budget of {budget_s:.0f} s spent")
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda", torch.cuda.current_device()) if args.device == "cuda" else torch.device("cpu")
    sizes = TINY if args.tiny else PAPER
    judged = device.type == "cuda" and not args.tiny
    why_not = ("tiny sizes on cpu" if device.type == "cpu" and args.tiny else "tiny sizes" if args.tiny
               else "cpu: the targets are for a GPU")
    rep = Report(args.out, meta_of(args, argv, device, sizes), judged, why_not)
    rep.save()
    t0 = time.perf_counter()
    run_jobs(rep, jobs_of(rep, sizes, device), args.wanted, args.budget_s, t0)
    if "mini_run" in args.wanted:
        rep.data["sections"]["mini_run"] = measure_mini_run(rep, args.out, args.mini_run, args.mini_run_timeout_s)
    errors = [k for k, v in rep.data["sections"].items() if v.get("status") == "error"]
    rep.data.update(status="complete", elapsed_s=time.perf_counter() - t0, errors=errors)
    rep.save()
    log(f"done in {rep.data['elapsed_s']:.0f} s: {len(rep.data['sections'])} sections, errors: {errors or 'none'}; "
        f"wrote {args.out / 'gpu.json'} and {args.out / 'gpu.md'}")
    return 1 if errors else 0


def _section_of(job: str) -> str:
    return job.split("_")[0] if job.startswith(("train_", "latency_")) else job


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
