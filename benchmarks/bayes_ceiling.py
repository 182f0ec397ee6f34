"""The Bayes ceiling of every miniature twin: the val mIoU of an oracle that predicts, for each
appearance cell, the class most frequent on it (``protoseg.data.ceiling``): how far any model can go.

Reads the ``bayes_ceiling.json`` that ``protoseg make-mini`` writes beside each twin (the main job's
``data/mini/raw/<dataset>``), or writes the twin into a temporary folder when it is absent. Writes
results/benchmarks/bayes_ceiling.{json,md}; the Table 4 figure draws the ADE20K-Full ladder.

    python benchmarks/bayes_ceiling.py [--raw data/mini/raw]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

TWINS = ("cityscapes", "ade20k", "coco-stuff-10k", "ade20k-full", "pretrain")


def ceilings(raw: Path) -> dict[str, dict[str, float]]:
    from protoseg.data.ceiling import CEILING_FILE
    from protoseg.data.mini import make_mini

    out = {}
    for twin in TWINS:
        path = raw / twin / CEILING_FILE
        if path.is_file():
            out[twin] = json.loads(path.read_text())
        else:
            with tempfile.TemporaryDirectory() as tmp:
                out[twin] = make_mini(twin, Path(tmp) / twin, seed=0)["bayes_ceiling"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", default="data/mini/raw", help="the folder of the written twins")
    ap.add_argument("--out", default="results/benchmarks/bayes_ceiling")
    args = ap.parse_args()
    result = ceilings(Path(args.raw))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["| twin | classes | Bayes ceiling (val mIoU %) |", "|---|---|---|"]
    lines += [f"| {twin} | {n} | {v:.2f} |" for twin, per in result.items() for n, v in per.items()]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
