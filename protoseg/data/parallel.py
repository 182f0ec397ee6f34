"""Per-file work in worker processes, and the collector that files the results into a manifest.

Used by ``prepare`` (conversion), ``ranking`` (ADE20K-Full top-N label sets) and ``check``.
A worker returns ``("ok", {rel: manifest entry}, skipped)`` or ``("error", message)``.
"""
from __future__ import annotations

import multiprocessing
import os
import time
from typing import Callable

from tqdm import tqdm

from protoseg.data.errors import DataError
from protoseg.data.manifest import META, Manifest

MANIFEST_SAVE_EVERY_S = 20.0
MAX_REPORTED_ERRORS = 20


def default_workers() -> int:
    """Worker processes by default: the CPUs this process may use, at most 8."""
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else os.cpu_count() or 1))


def run_parallel(fn: Callable, tasks: list, *, workers: int, desc: str, progress: bool,
                 on_result: Callable[[object], None]) -> None:
    """Apply ``fn`` to ``tasks`` in ``workers`` processes (inline if workers <= 1), with a bar."""
    bar = tqdm(total=len(tasks), desc=desc, unit="file", disable=not progress, dynamic_ncols=True)
    try:
        if workers <= 1 or len(tasks) <= 1:
            for t in tasks:
                on_result(fn(t))
                bar.update()
            return
        ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        chunk = max(1, min(16, len(tasks) // (workers * 8)))
        with ctx.Pool(workers) as pool:
            for result in pool.imap_unordered(fn, tasks, chunksize=chunk):
                on_result(result)
                bar.update()
    finally:
        bar.close()


class ManifestCollector:
    """Gathers worker results into the manifest, saving it now and then."""

    def __init__(self, manifest: Manifest):
        self.manifest, self.errors, self.done, self.skipped = manifest, [], 0, 0
        self.last_save = time.monotonic()

    def __call__(self, result) -> None:
        if result[0] == "error":
            self.errors.append(result[1])
            return
        _, entries, skipped = result
        self.manifest.files.update(entries)
        self.skipped += skipped
        self.done += not skipped
        if time.monotonic() - self.last_save > MANIFEST_SAVE_EVERY_S:
            self.manifest.save()
            self.last_save = time.monotonic()

    def raise_if_failed(self, what: str) -> None:
        """Save the manifest and raise one DataError listing the failed files (the first 20)."""
        if not self.errors:
            return
        self.manifest.save()
        shown = "\n  ".join(self.errors[:MAX_REPORTED_ERRORS])
        more = (f"\n  ... and {len(self.errors) - MAX_REPORTED_ERRORS} more"
                if len(self.errors) > MAX_REPORTED_ERRORS else "")
        raise DataError(f"{len(self.errors)} file(s) failed during {what}; the prepared root is "
                        f"incomplete (no {META}):\n  {shown}{more}")
