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

from protoseg.engine.provenance import machine_description  # noqa: E402
from protoseg.pipeline.compare import DRIFT_TOLERANCE_PP, band, head_kind, per_seed, verdict  # noqa: E402
from protoseg.pipeline.experiments import build_plan  # noqa: E402

REFERENCE_TABLES = REPO / "results/reference/tables"

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


def reference_row(key: str, tolerance: float, tables: Path = REFERENCE_TABLES) -> dict | None:
    """The committed reference's per-seed mIoU of run ``key`` (its first table row), its machine, and
    the band ``protoseg compare-results`` judges a user's value by."""
    import pandas as pd

    for f in sorted(tables.glob("table*.csv")):
        df = pd.read_csv(f, dtype={"column": str})
        hit = df[df["run"] == key]
        if len(hit):
            r = hit.iloc[0]
            seeds = per_seed(r)
            std = float(r["mIoU_std"]) if r["mIoU_std"] == r["mIoU_std"] else None
            return {"table": r["table"], "row": r["row"], "per_seed": {f"s{k}": v for k, v in seeds.items()},
                    "mean": sum(seeds.values()) / len(seeds), "std": std, "band_pp": band(seeds, tolerance, std),
                    "machine": r.get("machine")}
    return None


def judge(ref: dict | None, values: dict, seed: int, tolerance: float) -> dict:
    """Each value of this machine against the reference: its distance from the reference's same seed
    (cross-machine drift) in units of the reference's seed std, and compare-results' verdict."""
    if ref is None:
        return {}
    seeds = {int(k.lstrip("s")): v for k, v in ref["per_seed"].items()}
    out = {}
    for label, v in values.items():
        d = None if seed not in seeds else v["mIoU"] - seeds[seed]
        out[label] = {"minus_reference_same_seed_pp": d,
                      "in_reference_stds": None if d is None or not ref["std"] else d / ref["std"],
                      "verdict": verdict(seeds, {seed: v["mIoU"]}, tolerance, ref["std"])}
    return out


def summarize(rows: list[dict], seed: int, threads: list[int]) -> dict:
    """Everything derived from the measured runs: drift per row and per head kind, each value judged
    against the committed reference with the head's tolerance (``DRIFT_TOLERANCE_PP``)."""
    plan = build_plan(scale="mini", seeds=[seed])
    first = f"threads={threads[0]}"
    for r in rows:
        r["head"] = head_kind(plan.runs[r["run"]].config["model"].get("head", "softmax"))
        miou = [v["mIoU"] for k, v in r["runs"].items() if "repeat" not in k]
        r["thread_drift_pp"] = max(miou) - min(miou)
        r["repeat_drift_pp"] = abs(r["runs"][first]["mIoU"] - r["runs"][f"{first} (repeat)"]["mIoU"])
        tolerance = DRIFT_TOLERANCE_PP[r["head"]]
        r["reference"] = reference_row(r["run"], tolerance)
        r["against_reference"] = judge(r["reference"], r["runs"], seed, tolerance)
    judged = [j for r in rows for j in r["against_reference"].values()]
    return {
        "max_thread_drift_pp": max(r["thread_drift_pp"] for r in rows),
        "max_thread_drift_pp_by_head": {h: max(r["thread_drift_pp"] for r in rows if r["head"] == h)
                                        for h in sorted({r["head"] for r in rows})},
        "max_repeat_drift_pp": max(r["repeat_drift_pp"] for r in rows),
        "max_cross_machine_drift_pp": max((abs(j["minus_reference_same_seed_pp"]) for j in judged
                                           if j["minus_reference_same_seed_pp"] is not None), default=None),
        "verdicts_against_reference": sorted({j["verdict"].split(" (")[0] for j in judged}),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", nargs="+", default=list(DEFAULT_ENTRIES))
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "results/benchmarks/drift.json"))
    ap.add_argument("--summarize", action="store_true",
                    help="re-derive the summary and verdicts of the measured runs in --out; trains nothing")
    args = ap.parse_args(argv)
    if args.summarize:
        result = json.loads(Path(args.out).read_text())
        result.update(summarize(result["rows"], result["seed"], result["threads"]))
    else:
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
                rows.append({"entry": entry, "run": key, "runs": values})
        result = {
            "what": "final mIoU (%) of the same mini runs (same seed) trained with different CPU thread counts, "
                    "each judged against the committed reference (results/reference)",
            "seed": args.seed, "threads": args.threads,
            **summarize(rows, args.seed, args.threads),
            "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                        "cpu_model": machine_description()["cpu"], "cpus": os.cpu_count(),
                        "python": platform.python_version(), "torch": __import__("torch").__version__},
            "date": time.strftime("%Y-%m-%d"),
            "rows": rows,
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("max_thread_drift_pp_by_head", "max_repeat_drift_pp",
                                              "max_cross_machine_drift_pp", "verdicts_against_reference")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
