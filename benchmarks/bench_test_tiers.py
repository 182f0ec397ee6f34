"""Wall time of the two test tiers, as the README runs them (``scripts/test.sh``: 2 xdist workers).

- fast: ``bash scripts/test.sh -m "not slow"`` (the edit-test loop; target <= 3 min on 2 cores);
- full: ``bash scripts/test.sh`` (what CI runs: every test, the slurm ones too when a controller answers).

Writes ``results/benchmarks/test_tiers.json``: per tier the wall seconds, the CPU seconds of the
whole process tree (user + system; CPU/2 is the wall time two idle cores need at best, and depends
much less on other jobs than the wall time does), the pytest summary line,
the sum of the per-test durations, the 15 slowest tests and the 1-minute load average before and
after (other jobs on the machine inflate the times: compare tiers measured together).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_test_tiers.py                 # both tiers
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_test_tiers.py --tiers fast    # ~2-3 min on 2 cores
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TIERS = {"fast": ["-m", "not slow"], "full": []}


def run_tier(name: str, extra: list[str], log: Path | None = None) -> dict:
    cmd = ["bash", "scripts/test.sh", *TIERS[name], "-q", "-p", "no:cacheprovider", "--durations=0", *extra]
    load0 = os.getloadavg()[0]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    out = proc.stdout + proc.stderr
    if log:
        log.write_text(out)
    summary = next((line.strip("= ") for line in reversed(out.splitlines())
                    if re.search(r"\d+ (passed|failed)", line)), "")
    durations = re.findall(r"^([\d.]+)s (call|setup|teardown)\s+(\S+)$", out, re.M)
    slowest = durations[:15]
    return {"command": " ".join(cmd), "exit": proc.returncode, "wall_s": round(wall, 1), "summary": summary,
            "cpu_s": round(cpu, 1), "cpu_s_over_2_cores": round(cpu / 2, 1),
            "sum_of_test_durations_s": round(sum(float(d[0]) for d in durations), 1),
            "load_1min_before": round(load0, 2), "load_1min_after": round(os.getloadavg()[0], 2),
            "slowest": [{"s": float(s), "phase": ph, "test": t} for s, ph, t in slowest]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiers", nargs="+", choices=tuple(TIERS), default=list(TIERS))
    ap.add_argument("--out", default=str(REPO / "results/benchmarks/test_tiers.json"))
    ap.add_argument("--log-dir", help="also keep each tier's pytest output here (<tier>.log)")
    ap.add_argument("pytest_args", nargs="*", help="passed on to pytest (after --)")
    args = ap.parse_args(argv)
    result = {"what": "wall time of `bash scripts/test.sh` per tier (2 xdist workers)",
              "date": datetime.date.today().isoformat(),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
              "tiers": {}}
    for name in args.tiers:
        log = Path(args.log_dir) / f"{name}.log" if args.log_dir else None
        if log:
            log.parent.mkdir(parents=True, exist_ok=True)
        result["tiers"][name] = res = run_tier(name, args.pytest_args, log)
        print(f"{name}: {res['wall_s']} s wall, {res['cpu_s']} s CPU, exit {res['exit']}, {res['summary']} "
              f"(load {res['load_1min_before']} -> {res['load_1min_after']})", file=sys.stderr)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return max(r["exit"] for r in result["tiers"].values())


if __name__ == "__main__":
    sys.exit(main())
