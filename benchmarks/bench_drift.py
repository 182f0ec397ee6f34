"""Cross-machine float drift of the mini reproduction, measured: the same runs (same config, same
seed) trained with different CPU thread counts, which changes the order of floating-point reductions
exactly as another machine (core count, BLAS build) does.

For each chosen entry the run is trained once per thread count (``OMP_NUM_THREADS``), plus a repeat at
the first thread count (same settings twice: is a run bitwise repeatable?). The final mIoU of each is
written to ``results/benchmarks/drift.json`` with the largest difference in percentage points; that
largest difference is the cross-machine tolerance ``protoseg compare-results`` uses
(``protoseg/pipeline/compare.py``, documented in docs/pipeline.md).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_drift.py            # ~5 min on 2 CPU cores
    ... --entries t2-ours-b4 smoke-ours-b0 --threads 1 2 --out /tmp/drift.json

Needs the prepared mini datasets of the chosen entries (``snakemake -c1 data/mini/prepared/cityscapes/meta.json``
or the main job).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from protoseg.pipeline.experiments import build_plan  # noqa: E402

# one entry per mini backbone family (ResNet-18, HRNet-W18-small, MiT-B0, Swin-T), both heads
DEFAULT_ENTRIES = ("t2-fcn-r101", "t2-ours-r101", "t2-ours-w48", "t2-segf-b4", "t2-ours-b4", "t2-ours-swin-b",
                   "t5b-k10")


def train(key: str, seed: int, threads: int, runs_dir: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONPATH=str(REPO), MLFLOW_TRACKING_URI="")
    env.pop("MLFLOW_TRACKING_URI")
    t0 = time.perf_counter()
    config = runs_dir / "mini" / key / "run.yaml"  # the pipeline's two commands (rules run_config, train)
    cli = [sys.executable, "-m", "protoseg.cli"]
    proc = subprocess.run([*cli, "experiments", "config", key, "--scale", "mini", "--runs-dir", str(runs_dir),
                           "--out", str(config)], cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode == 0:
        proc = subprocess.run([*cli, "train", "--config", str(config), "--resume", "auto", f"run.seed={seed}",
                               f"run.name={key}/s{seed}"], cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"training {key} with {threads} thread(s) failed:\n{proc.stderr[-3000:]}")
    metrics = json.loads((runs_dir / "mini" / key / f"s{seed}" / "metrics.json").read_text())
    return {"mIoU": 100.0 * metrics["mIoU"], "aAcc": 100.0 * metrics["aAcc"], "seconds": time.perf_counter() - t0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", nargs="+", default=list(DEFAULT_ENTRIES))
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "results/benchmarks/drift.json"))
    args = ap.parse_args(argv)
    plan = build_plan(scale="mini", seeds=[args.seed])
    rows = []
    with tempfile.TemporaryDirectory(prefix="protoseg-drift-") as tmp:
        for entry in args.entries:
            key = plan.entry_run[entry]
            values = {}
            for i, t in enumerate([*args.threads, args.threads[0]]):
                label = f"threads={t}" if i < len(args.threads) else f"threads={t} (repeat)"
                values[label] = train(key, args.seed, t, Path(tmp) / f"r{i}")
                print(f"{entry:16s} {label:20s} mIoU {values[label]['mIoU']:.4f}", file=sys.stderr)
            miou = [v["mIoU"] for k, v in values.items() if "repeat" not in k]
            first = f"threads={args.threads[0]}"
            rows.append({"entry": entry, "run": key, "runs": values,
                         "thread_drift_pp": max(miou) - min(miou),
                         "repeat_drift_pp": abs(values[first]["mIoU"] - values[f"{first} (repeat)"]["mIoU"])})
    result = {
        "what": "final mIoU (%) of the same mini runs (same seed) trained with different CPU thread counts",
        "seed": args.seed, "threads": args.threads,
        "max_thread_drift_pp": max(r["thread_drift_pp"] for r in rows),
        "max_repeat_drift_pp": max(r["repeat_drift_pp"] for r in rows),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": __import__("torch").__version__},
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("max_thread_drift_pp", "max_repeat_drift_pp")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
