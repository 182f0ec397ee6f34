"""The sweep behind the mini recipe (docs/mini_recipe.md): learning curves of the parametric
baselines on the twins, with and without the pre-trained backbone, at several schedule lengths.

Each point is a real ``protoseg train`` of the composed mini config of a table entry, with
``train.iters`` (and ``model.pretrained``) overridden; the mIoU is the run's own final evaluation.
Prerequisites: the prepared twins and the pre-trained backbone files (``snakemake -c2 pretrain_all``
or the main job). Writes results/benchmarks/mini_recipe_sweep.json and prints a markdown table.

    python benchmarks/sweep_mini_recipe.py --entries t2-segf-b4 t1-segf-b4 --iters 120 480
    python benchmarks/sweep_mini_recipe.py --entries t2-segf-b4 --iters 120 --no-pretrained \
        --override model.decoder_channels=128 model.drop_path_rate=0.0   # one lever, scratch only

``--override KEY=VALUE`` sets engine config keys (the ``protoseg train`` override syntax) on every
point; each point's row records them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mini_runs import save_rows, train_config  # noqa: E402
from protoseg.pipeline.experiments import build_plan  # noqa: E402


def run_point(plan, entry: str, iters: int, pretrained: bool, out_dir: Path, overrides: list[str]) -> dict:
    from protoseg.config import apply_overrides

    key = plan.entry_run[entry]
    cfg = apply_overrides(plan.run_config(key, 0, entry), overrides)
    tag = "".join(f"-{o}" for o in overrides).replace("/", "_")
    cfg["run"] = {"name": f"{entry}-it{iters}-{'pre' if pretrained else 'scratch'}{tag}", "output_dir": str(out_dir),
                  "seed": 0}
    cfg["train"]["iters"] = iters
    if not pretrained:
        cfg["model"].pop("pretrained", None)
    run_dir, wall = train_config(cfg, out_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"entry": entry, "dataset": cfg["data"]["dataset"], "backbone": cfg["model"]["backbone"],
            "head": cfg["model"]["head"], "iters": iters, "batch_size": cfg["train"]["batch_size"],
            "pretrained": pretrained, "overrides": overrides, "mIoU": round(100 * metrics["mIoU"], 2),
            "aAcc": round(100 * metrics["aAcc"], 2), "wall_s": round(wall, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", nargs="+", default=["t2-segf-b4", "t1-segf-b4"])
    ap.add_argument("--iters", nargs="+", type=int, default=[120, 480])
    ap.add_argument("--no-scratch", action="store_true", help="only the pre-trained points")
    ap.add_argument("--no-pretrained", action="store_true", help="only the from-scratch points")
    ap.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                    help="engine config overrides applied to every point (e.g. model.decoder_channels=128)")
    ap.add_argument("--out", default="results/benchmarks/mini_recipe_sweep.json")
    ap.add_argument("--runs-dir", default="runs/sweep")
    args = ap.parse_args()
    plan = build_plan()
    out = Path(args.out)
    rows = json.loads(out.read_text()) if out.is_file() else []  # points accumulate across invocations
    for entry in args.entries:
        for iters in args.iters:
            for pre in [p for p in (True, False) if not (p and args.no_pretrained) and not (not p and args.no_scratch)]:
                rows.append(run_point(plan, entry, iters, pre, Path(args.runs_dir), args.override))
                save_rows(out, rows)
    print("| entry | dataset | backbone | iters | batch | pre-trained | overrides | mIoU | aAcc | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['entry']} | {r['dataset']} | {r['backbone']} | {r['iters']} | {r['batch_size']} | "
              f"{'yes' if r['pretrained'] else 'no'} | {' '.join(r.get('overrides') or []) or '-'} | {r['mIoU']} | {r['aAcc']} | {r['wall_s']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
