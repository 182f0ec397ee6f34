"""The one-seed main job's timing, from a finished `snakemake -c2` in a fresh clone.

Reads the Snakemake benchmark files of the clone (``logs/<scale>/benchmarks/``: one TSV per job,
its wall seconds in column ``s``) and sums them per rule; seed 0 only, so that a later multi-seed
pass in the same clone does not count. The elapsed time and exit status are the caller's (the wall
clock around `snakemake -c2`); the machine recorded is the one this script runs on, so run it where the
job ran. Writes results/benchmarks/main_job_seed0/timing.json.

    python benchmarks/main_job_timing.py --clone /path/to/clone --elapsed-s 2507 --exit-status 0 --start-utc 17:19:29 \\
        --what "the one-seed main job on a fresh clone of commit abc1234, 2 idle cores"
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections import defaultdict
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protoseg.engine.provenance import machine_description  # noqa: E402


def job_walls(bench_dir: Path) -> tuple[dict[str, float], dict[str, int]]:
    """Per rule: the summed wall seconds and the number of seed-0 (or seedless) jobs."""
    walls: dict[str, float] = defaultdict(float)
    jobs: dict[str, int] = defaultdict(int)
    for tsv in sorted(bench_dir.rglob("*.tsv")):
        rel = tsv.relative_to(bench_dir)
        rule = rel.parts[0] if len(rel.parts) > 1 else tsv.stem
        seed = re.search(r"_s(\d+)(?:_|$)", tsv.stem)  # <key>_s<seed>[_<split>]
        if seed and seed.group(1) != "0":
            continue  # another seed's job
        with tsv.open() as f:
            row = next(csv.DictReader(f, delimiter="\t"))
        walls[rule] += float(row["s"])
        jobs[rule] += 1
    return dict(walls), dict(jobs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clone", required=True, type=Path)
    ap.add_argument("--scale", default="mini")
    ap.add_argument("--elapsed-s", required=True, type=float)
    ap.add_argument("--exit-status", required=True, type=int, help="snakemake's exit status")
    ap.add_argument("--start-utc", required=True)
    ap.add_argument("--what", required=True)
    ap.add_argument("--record-step", nargs=2, type=float, metavar=("SECONDS", "STAGES"),
                    help="the dvc.lock record step's time and stage count, as its log line says")
    ap.add_argument("--out", default="results/benchmarks/main_job_seed0/timing.json", type=Path)
    args = ap.parse_args()
    walls, jobs = job_walls(args.clone / "logs" / args.scale / "benchmarks")
    record = {"what": args.what, "date": date.today().isoformat(), "start_utc": args.start_utc,
              "exit_status": args.exit_status,
              "elapsed_s": round(args.elapsed_s), "machine": machine_description()["description"],
              "sum_job_wall_s": {k: round(v, 1) for k, v in sorted(walls.items(), key=lambda kv: -kv[1])},
              "jobs": {k: jobs[k] for k in ("train", "pretrain", "make_mini", "evaluate") if k in jobs}}
    if args.record_step:
        record["record_step_s"], record["record_step_stages"] = args.record_step[0], int(args.record_step[1])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
