"""The timing harness of the benchmark scripts: medians after a warm-up, peak CUDA memory.

- ``median_ms``: milliseconds, CUDA events around every run on a GPU, the wall clock on CPU;
- ``median_time``: seconds by a given clock (wall, or process CPU time), synchronised on a GPU;
- ``PeakMemory``: peak allocated GiB above what was allocated on entry (CUDA; ``None`` on CPU);
- ``sync`` / ``release``: wait for the device; give cached CUDA memory back between measurements.

``benchmarks/`` is not a package: the scripts import it as ``_timing`` (their own folder is on
``sys.path`` when they run).
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch


def sync(device: torch.device | str) -> None:
    """Wait for the work queued on ``device`` (a no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def release() -> None:
    """Give the CUDA caching allocator's free blocks back (between measurements)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def median_ms(fn: Callable[[], Any], runs: int, warmup: int, device: torch.device) -> float:
    """Median milliseconds of ``fn``: CUDA events around every run on a GPU, the wall clock on CPU."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(runs):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def median_time(fn: Callable[[], Any], runs: int, device: str, warmup: int = 1,
                clock: Callable[[], float] = time.perf_counter) -> float:
    """Median seconds of ``fn`` over ``runs`` runs, by ``clock`` (wall, or process CPU time, which
    other jobs on a shared machine disturb less)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        sync(device)
        t = clock()
        fn()
        sync(device)
        times.append(clock() - t)
    return statistics.median(times)


class PeakMemory:
    """Peak allocated GiB above what was allocated on entry (CUDA); ``None`` on CPU."""

    def __init__(self, device: torch.device):
        self.device, self.gib = device, None

    def __enter__(self):
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.empty_cache()
            self.base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            sync(self.device)
            self.gib = (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**30
        return False
