"""The mini scale's targets, checked on a results folder (default: the committed 3-seed reference).

Per twin and backbone family the parametric (softmax) baseline's mIoU against its target; per table
the prototype entries' mean gap to their parametric counterparts; the seed spread of every row; the
share of conclusive distinct claims; the Bayes ceilings for comparison. Writes
``<results>/targets.md`` and prints it.

    python benchmarks/mini_targets.py [--results results/reference]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

# (table, parametric row prefix) -> (twin, target mIoU %); top-847: >= 10 or >= 60% of the ceiling
PARAMETRIC = {"table2": ("Cityscapes twin (19)", 50.0), "table1": ("ADE20K twin (150)", 25.0),
              "table3": ("COCO-Stuff twin (171)", 25.0)}
FAMILIES = ("ResNet", "HRNet", "Swin", "MiT")
SPREAD_TARGET = 1.5
CONCLUSIVE_TARGET = 0.40


def _family(row: str) -> str:
    return next((f for f in FAMILIES if f in row or (f == "MiT" and "SegFormer" in row)), "?")


def summarise(results: Path, ceiling: dict) -> list[str]:
    tables = {p.stem: pd.read_csv(p) for p in sorted((results / "tables").glob("*.csv")) if p.stem != "claims"}
    lines = [f"# Mini-scale targets on `{results}`", ""]
    lines += ["## Parametric baselines", "", "| twin | family | mIoU mean +- std | target | met |", "|---|---|---|---|---|"]
    for table, (twin, target) in PARAMETRIC.items():
        df = tables.get(table)
        if df is None:
            continue
        for _, r in df[~df["row"].str.startswith("Ours")].iterrows():
            lines.append(f"| {twin} | {_family(r['row'])} ({r['row']}) | {r['mIoU_mean']:.1f} +- {r['mIoU_std']:.2f} "
                         f"| {target:.0f} | {'yes' if r['mIoU_mean'] >= target else 'no'} |")
    t4 = tables.get("table4")
    if t4 is not None:
        for _, r in t4[t4["row"].str.contains("parametric") & ~t4["row"].str.contains("non")].iterrows():
            n = str(int(r["column"]))
            ceil = ceiling.get(n)
            target = 10.0 if n != "847" else min(10.0, 0.6 * ceil) if ceil else 10.0
            if n in ("150", "847"):
                lines.append(f"| ADE20K-Full top-{n} (ceiling {ceil}) | MiT ({r['row']}) | {r['mIoU_mean']:.1f} +- "
                             f"{r['mIoU_std']:.2f} | {25.0 if n == '150' else target:.0f} | "
                             f"{'yes' if r['mIoU_mean'] >= (25.0 if n == '150' else target) else 'no'} |")
    lines += ["", "## Prototype head vs parametric, mean gap per table (target: >= -2 points)", "",
              "| table | pairs | mean gap (ours - parametric) | met |", "|---|---|---|---|"]
    for table in ("table1", "table2", "table3", "table6", "table7"):
        df = tables.get(table)
        if df is None:
            continue
        ours = df[df["row"].str.startswith("Ours")]
        base = df[~df["row"].str.startswith("Ours")]
        gaps = [o["mIoU_mean"] - b["mIoU_mean"] for (_, o), (_, b) in zip(ours.iterrows(), base.iterrows())
                if o["row"].split(", ", 1)[-1] == b["row"].split(", ", 1)[-1]]
        if gaps:
            gap = sum(gaps) / len(gaps)
            lines.append(f"| {table} | {len(gaps)} | {gap:+.1f} | {'yes' if gap >= -2 else 'no'} |")
    rows = pd.concat(tables.values(), ignore_index=True)
    rows = rows[rows["seeds"] >= 2]
    over = rows[rows["mIoU_std"] > SPREAD_TARGET]
    lines += ["", "## Seed spread", "",
              f"{len(rows)} rows with >= 2 seeds; std median {rows['mIoU_std'].median():.2f}, max "
              f"{rows['mIoU_std'].max():.2f}; {len(over)} rows above {SPREAD_TARGET} points"
              + (": " + ", ".join(f"{r['table']} {r['row']} {r['column']} ({r['mIoU_std']:.2f})"
                                  for _, r in over.iterrows()) if len(over) else "") + "."]
    claims = pd.read_csv(results / "tables" / "claims.csv")
    distinct = claims[claims["independence"] == "independent"]
    conclusive = int((distinct["verdict"] != "inconclusive").sum())
    share = conclusive / max(len(distinct), 1)
    counts = distinct["verdict"].value_counts().to_dict()
    lines += ["", "## Claims", "",
              f"{len(claims)} rows, {len(distinct)} distinct: {counts.get('reproduced', 0)} reproduced, "
              f"{counts.get('contradicted', 0)} contradicted, {counts.get('inconclusive', 0)} inconclusive; "
              f"conclusive {conclusive}/{len(distinct)} = {100 * share:.0f}% (target {100 * CONCLUSIVE_TARGET:.0f}%: "
              f"{'met' if share >= CONCLUSIVE_TARGET else 'not met'})."]
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="results/reference")
    ap.add_argument("--ceiling", default="results/benchmarks/bayes_ceiling.json")
    args = ap.parse_args()
    ceiling = json.loads(Path(args.ceiling).read_text()).get("ade20k-full", {}) if Path(args.ceiling).is_file() else {}
    lines = summarise(Path(args.results), ceiling)
    (Path(args.results) / "targets.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
