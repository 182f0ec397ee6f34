"""The sweep behind the mini recipe (docs/mini_recipe.md): learning curves of the parametric
baselines on the twins, with and without the pre-trained backbone, at several schedule lengths.

Each point is a real ``protoseg train`` of the composed mini config of a table entry, with
``train.iters`` (and ``model.pretrained``) overridden; the mIoU is the run's own final evaluation.
Prerequisites: the prepared twins and the pre-trained backbone files (``snakemake -c2 pretrain_all``
or the main job). Writes results/benchmarks/mini_recipe_sweep.json and prints a markdown table.

    python benchmarks/sweep_mini_recipe.py --entries t2-segf-b4 t1-segf-b4 --iters 120 480
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from protoseg.pipeline.experiments import build_plan


def run_point(plan, entry: str, iters: int, pretrained: bool, out_dir: Path) -> dict:
    key = plan.entry_run[entry]
    cfg = plan.run_config(key, 0, entry)
    cfg["run"] = {"name": f"{entry}-it{iters}-{'pre' if pretrained else 'scratch'}", "output_dir": str(out_dir),
                  "seed": 0}
    cfg["train"]["iters"] = iters
    if not pretrained:
        cfg["model"].pop("pretrained", None)
    run_dir = out_dir / cfg["run"]["name"]
    path = out_dir / f"{cfg['run']['name']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "protoseg.cli", "train", "--config", str(path), "--resume", "auto"],
                   check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"entry": entry, "dataset": cfg["data"]["dataset"], "backbone": cfg["model"]["backbone"],
            "head": cfg["model"]["head"], "iters": iters, "batch_size": cfg["train"]["batch_size"],
            "pretrained": pretrained, "mIoU": round(100 * metrics["mIoU"], 2),
            "aAcc": round(100 * metrics["aAcc"], 2), "wall_s": round(time.perf_counter() - t0, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", nargs="+", default=["t2-segf-b4", "t1-segf-b4"])
    ap.add_argument("--iters", nargs="+", type=int, default=[120, 480])
    ap.add_argument("--no-scratch", action="store_true", help="only the pre-trained points")
    ap.add_argument("--out", default="results/benchmarks/mini_recipe_sweep.json")
    ap.add_argument("--runs-dir", default="runs/sweep")
    args = ap.parse_args()
    plan = build_plan()
    rows = []
    for entry in args.entries:
        for iters in args.iters:
            for pre in (True,) if args.no_scratch else (True, False):
                rows.append(run_point(plan, entry, iters, pre, Path(args.runs_dir)))
                print(json.dumps(rows[-1]), flush=True)
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    print("| entry | dataset | backbone | iters | batch | pre-trained | mIoU | aAcc | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['entry']} | {r['dataset']} | {r['backbone']} | {r['iters']} | {r['batch_size']} | "
              f"{'yes' if r['pretrained'] else 'no'} | {r['mIoU']} | {r['aAcc']} | {r['wall_s']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
