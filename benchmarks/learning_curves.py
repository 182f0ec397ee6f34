"""Learning curves of the mini parametric baselines, and the schedule each target of issue 9 needs.

For each twin, one real ``protoseg train`` of the composed mini config of a table entry (softmax head,
MiT-B0, fine-tuned from the pre-trained backbone: exactly what the main job runs) with ``train.iters``
raised to ``--iters`` and an evaluation every ``--val-interval`` iterations (``val_log.jsonl``).
The last point is a real run of that length; the earlier points are the same run before its
learning rate has decayed, so they are lower bounds for runs of that length.

The curve is summarised by a least-squares line of mIoU against log2(iterations) over the points at or
after ``--fit-from``; solving it for the target gives the schedule that would reach it (an
extrapolation, marked as such when the target lies beyond the last point), and the measured seconds
per iteration turn that into the main job's cost. Prerequisites: the prepared twins and
``data/mini/pretrained/mit_b0.pt`` (``snakemake -c2 pretrain_all`` or the main job). Writes
results/benchmarks/learning_curves.json and .png (mIoU against iterations, targets dashed) and prints
a markdown table.

    python benchmarks/learning_curves.py                        # the four twins, 1920 iterations
    python benchmarks/learning_curves.py --entries t2-segf-b4 --iters 480 --val-interval 120
    python benchmarks/learning_curves.py --plot-only            # re-draw the figure from the JSON
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mini_runs import save_rows, train_config  # noqa: E402
from protoseg.pipeline.experiments import build_plan  # noqa: E402

# issue 9's targets (mIoU %) for the parametric baselines, per entry of the list
TARGETS = {"t2-segf-b4": 50.0, "t1-segf-b4": 25.0, "t3-segf-b4": 25.0, "t4-param-k1-847": 10.0}
MAIN_JOB_RUNS = len(build_plan(scale="mini", seeds=[0]).runs)  # the main job: every run of one seed
NO_REACH = 10 ** 6  # iterations: a fitted line that needs more says "not within reach" instead of a number


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_curve(plan, entry: str, iters: int, val_interval: int, out_dir: Path) -> dict:
    """Train ``entry``'s composed mini config for ``iters`` iterations; return its curve."""
    key = plan.entry_run[entry]
    cfg = plan.run_config(key, 0, entry)
    name = f"{entry}-curve-it{iters}"
    cfg["run"] = {"name": name, "output_dir": str(out_dir), "seed": 0}
    cfg["train"].update(iters=iters, val_interval=val_interval)
    run_dir, wall = train_config(cfg, out_dir)
    points = _read_jsonl(run_dir / "val_log.jsonl")
    final = json.loads((run_dir / "metrics.json").read_text())
    points.append({"iter": iters, "mIoU": final["mIoU"], "aAcc": final["aAcc"]})
    log = _read_jsonl(run_dir / "train_log.jsonl")
    img_s = sorted(r["img_per_s"] for r in log)[len(log) // 2]  # median training throughput
    return {"entry": entry, "dataset": cfg["data"]["dataset"], "backbone": cfg["model"]["backbone"],
            "head": cfg["model"]["head"], "batch_size": cfg["train"]["batch_size"],
            "main_job_iters": plan.runs[key].config["train"]["iters"], "iters": iters,
            "pretrained": bool(cfg["model"].get("pretrained")),
            "curve": [{"iter": p["iter"], "mIoU": round(100 * p["mIoU"], 2), "aAcc": round(100 * p["aAcc"], 2)}
                      for p in points],
            "s_per_iter": round(cfg["train"]["batch_size"] / img_s, 4), "wall_s": round(wall, 1)}


def fit_log_line(curve: list[dict], fit_from: int) -> tuple[float, float]:
    """Least-squares ``mIoU = a + b * log2(iter)`` over the points with ``iter >= fit_from``."""
    pts = [(math.log2(p["iter"]), p["mIoU"]) for p in curve if p["iter"] >= fit_from]
    if len(pts) < 2:
        raise ValueError(f"fewer than 2 curve points at or after iteration {fit_from}")
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    b = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
    return my - b * mx, b


def iters_for_target(a: float, b: float, target: float) -> float:
    """The iterations at which the fitted line reaches ``target`` (inf when it does not rise, or not
    within ``NO_REACH`` iterations)."""
    if b <= 0 or (target - a) / b > math.log2(NO_REACH):
        return math.inf
    return 2 ** ((target - a) / b)


def summarise(row: dict, fit_from: int) -> dict:
    a, b = fit_log_line(row["curve"], fit_from)
    target = TARGETS.get(row["entry"])
    need = iters_for_target(a, b, target) if target is not None else None
    row["fit"] = {"from_iter": fit_from, "a": round(a, 3), "points_per_doubling": round(b, 3)}
    if need is not None:
        row["target_mIoU"] = target
        row["reached_at"] = next((p["iter"] for p in row["curve"] if p["mIoU"] >= target), None)
        row["iters_for_target"] = None if math.isinf(need) else round(need)
        row["extrapolated"] = row["reached_at"] is None
        if not math.isinf(need):
            # every run of the main job at this schedule, two at a time on 2 cores
            row["main_job_h_at_that_schedule"] = round(MAIN_JOB_RUNS * need * row["s_per_iter"] / 2 / 3600, 1)
    return row


def plot(rows: list[dict], out: Path) -> Path:
    """mIoU against iterations (log scale) per twin, each target dashed in the twin's colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for i, r in enumerate(rows):
        color = f"C{i}"
        xs = [p["iter"] for p in r["curve"]]
        ax.plot(xs, [p["mIoU"] for p in r["curve"]], "o-", color=color,
                label=f"{r['dataset']} ({r['entry']})")
        if r.get("target_mIoU") is not None:
            ax.axhline(r["target_mIoU"], color=color, ls="--", lw=1)
        ax.axvline(r["main_job_iters"], color="0.6", ls=":", lw=1)
    ax.set_xscale("log", base=2)
    ticks = sorted({p["iter"] for r in rows for p in r["curve"]} | {r["main_job_iters"] for r in rows})
    ax.set_xticks(ticks, [str(t) for t in ticks], fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel("iterations at batch 8 (dotted: the main job's schedule)")
    ax.set_ylabel("val mIoU (%)")
    ax.set_title("Mini parametric baselines (softmax MiT-B0, pre-trained): learning curves; dashed: targets")
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", nargs="+", default=list(TARGETS))
    ap.add_argument("--iters", type=int, default=1920)
    ap.add_argument("--val-interval", type=int, default=240)
    ap.add_argument("--fit-from", type=int, default=480, help="first iteration the log-line fit uses")
    ap.add_argument("--out", default="results/benchmarks/learning_curves.json")
    ap.add_argument("--runs-dir", default="runs/curves")
    ap.add_argument("--plot-only", action="store_true", help="only re-draw the figure from --out")
    args = ap.parse_args()
    out = Path(args.out)
    rows = {r["entry"]: r for r in json.loads(out.read_text())} if out.is_file() else {}
    if args.plot_only:
        print(plot(list(rows.values()), out.with_suffix(".png")))
        return 0
    plan = build_plan()
    for entry in args.entries:
        rows[entry] = summarise(run_curve(plan, entry, args.iters, args.val_interval, Path(args.runs_dir)),
                                args.fit_from)
        save_rows(out, list(rows.values()), rows[entry])
    plot(list(rows.values()), out.with_suffix(".png"))
    print("| twin | main-job iters | mIoU at " + ", ".join(str(p["iter"]) for p in next(iter(rows.values()))["curve"])
          + " | points per doubling | target | iterations for it | main job at that schedule |")
    print("|---|---|---|---|---|---|---|")
    for r in rows.values():
        print(f"| {r['dataset']} ({r['entry']}) | {r['main_job_iters']} | "
              + " / ".join(str(p["mIoU"]) for p in r["curve"])
              + f" | {r['fit']['points_per_doubling']} | {r.get('target_mIoU')} | "
              f"{r.get('iters_for_target')}{' (extrapolated)' if r.get('extrapolated') else ''} | "
              f"{r.get('main_job_h_at_that_schedule')} h |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
