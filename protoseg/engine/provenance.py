"""What a run folder records about how it was trained, and the workflow's retry gate.

- ``run_info.json``: one record per attempt (``record_attempt``), ``finished`` at the end.
- ``machine.json``: the machine (CPU model, cores, threads, GPUs; the tables' ``machine`` column).
- ``last_exit.json``: the exit status of the latest attempt of ``protoseg train --attempt N``.
  Attempt N > 1 runs only if attempt N-1 exited 75 (preempted after a checkpoint) or left no record
  (killed: node failure, out of memory); any other failure would repeat, so the retry stops at once
  with the same status. Snakemake has no per-status retry; this is it (docs/errors.md).
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from protoseg.atomic_io import sha256_file, write_json_atomic

from .signals import EXIT_PREEMPTED

EXIT_RECORD = "last_exit.json"  # the exit status of the job's latest attempt (rank 0)
RETRYABLE = (EXIT_PREEMPTED,)  # preempted after a checkpoint; a process killed outright leaves no record


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def git_commit(repo: Path | None = None) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=repo or Path(__file__).resolve().parents[2], timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def data_hash(root: str | Path) -> str:
    """sha256 of the prepared root's manifest.json (it lists the sha256 of every file), else of meta.json."""
    for name in ("manifest.json", "meta.json"):
        p = Path(root) / name
        if p.is_file():
            return sha256_file(p)
    return "unknown"


def read_run_info(path: Path) -> dict:
    try:
        info = json.loads(path.read_text()) if path.is_file() else {}
    except (ValueError, UnicodeDecodeError):
        info = {}
    return info if isinstance(info, dict) else {}


def record_attempt(run_dir: Path, attempt: dict) -> dict:
    """Append ``attempt`` to ``run_info.json``'s ``attempts`` (earlier records are kept; a file of the
    old one-record format becomes the first attempt). Top-level ``git_commit``/``data_hash`` stay
    those of the first attempt; ``git_commits``/``data_hashes`` list every distinct one."""
    path = run_dir / "run_info.json"
    info = read_run_info(path)
    attempts = info.get("attempts") if isinstance(info.get("attempts"), list) else []
    if not attempts and info.get("started"):  # written by an older version: one record, keep it
        attempts = [{"start_iteration": info.get("resumed_from", 0), "git_commit": info.get("git_commit"),
                     "data_hash": info.get("data_hash"), "started": info.get("started")}]
    attempts.append(attempt)
    first = attempts[0]
    info.update({k: v for k, v in attempt.items() if k in ("world_size", "device", "torch", "sync_bn")})
    info.update({"git_commit": first.get("git_commit"), "data_hash": first.get("data_hash"),
                 "git_commits": list(dict.fromkeys(a.get("git_commit") for a in attempts)),
                 "data_hashes": list(dict.fromkeys(a.get("data_hash") for a in attempts)),
                 "resumed_from": attempt["start_iteration"], "started": first.get("started"),
                 "attempts": attempts})
    info.pop("finished", None)
    write_json_atomic(path, info)
    return info


def record_finished(run_dir: Path) -> None:
    path = run_dir / "run_info.json"
    info = read_run_info(path)
    info["finished"] = now()
    if isinstance(info.get("attempts"), list) and info["attempts"]:
        info["attempts"][-1]["finished"] = info["finished"]
    write_json_atomic(path, info)


def machine_description() -> dict:
    """The machine a run trains on (the tables' ``machine`` column): CPU model and cores, GPU names,
    the thread count; floats drift between machines (docs/pipeline.md, compare-results)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    # the instruction set torch's CPU kernels use (AVX2, AVX512, ...): one CPU name ("AMD EPYC") covers
    # generations with different kernels, hence different float rounding (docs/pipeline.md)
    isa = torch.backends.cpu.get_cpu_capability()
    gpus = []
    try:
        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no CUDA build or driver: no GPUs
        pass
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    desc = (f"{cpu} ({os.cpu_count()} cores, {isa}, OMP_NUM_THREADS={threads})"
            + (f"; {len(gpus)}x {gpus[0]}" if gpus else ""))
    return {"description": desc, "cpu": cpu, "cpu_count": os.cpu_count(), "cpu_capability": isa, "gpus": gpus,
            "omp_num_threads": threads, "platform": platform.platform()}


# ---- the retry gate (protoseg train --attempt N) ----------------------------------------------------
def _main_rank() -> bool:
    return os.environ.get("RANK", "0") == "0"


def refused_retry(run_dir: Path, attempt: int) -> int | None:
    """The status to stop with when attempt ``attempt`` retries a failure that would repeat (printed
    as one ``error:`` line); ``None`` when it may run."""
    record = run_dir / EXIT_RECORD
    if attempt <= 1 or not record.is_file():
        return None
    try:
        prev = json.loads(record.read_text())
    except ValueError:
        prev = {}
    code = prev.get("exit") if isinstance(prev, dict) else None
    if isinstance(code, int) and code not in RETRYABLE and code != 0:
        print(f"error: not retrying {run_dir} (attempt {attempt}): attempt {prev.get('attempt')} exited with "
              f"status {code}, a failure a retry would repeat (only 75, preemption, and a killed process "
              "are retried); fix the cause and run the workflow again; see docs/errors.md", file=sys.stderr)
        return code
    return None


def begin_attempt(run_dir: Path) -> None:
    """From here on a killed process leaves no record, so its retry runs."""
    if _main_rank():
        (run_dir / EXIT_RECORD).unlink(missing_ok=True)


def record_exit(run_dir: Path, attempt: int, code: int) -> None:
    if _main_rank():
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_dir / EXIT_RECORD, {"attempt": attempt, "exit": code})


def exit_status(err: BaseException) -> int:
    """The status ``protoseg.cli.main`` gives an exception escaping a subcommand."""
    from protoseg.cli import exit_status as cli_exit_status

    return cli_exit_status(err)
