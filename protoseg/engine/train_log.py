"""The training log: ``train_log.jsonl`` rows (means of the loss terms, lr, throughput every
``train.log_interval``) with a progress line or bar, and the jsonl helpers that append a row or cut
a log back to the iteration a resumed run starts from (``train_log.jsonl``, ``val_log.jsonl``)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from protoseg.atomic_io import write_bytes_atomic

if TYPE_CHECKING:
    from protoseg.config import RunConfig

    from .data_order import IterationBatchSampler
    from .distributed import DistInfo


def truncate_jsonl(path: Path, last_iter: int) -> None:
    """Keep the rows of ``path`` up to iteration ``last_iter`` (rows that do not parse are dropped)."""
    if not path.is_file():
        return
    rows = [ln for ln in path.read_text().splitlines() if ln.strip()]
    keep = []
    for ln in rows:
        try:
            if json.loads(ln)["iter"] <= last_iter:
                keep.append(ln)
        except (ValueError, KeyError):
            pass
    write_bytes_atomic(path, ("\n".join(keep) + "\n" if keep else "").encode())


def append_jsonl(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()


class TrainLog:
    """Means of the loss terms over each ``log_interval``: a ``train_log.jsonl`` row and a progress
    line (a tqdm bar on a terminal) on rank 0."""

    def __init__(self, cfg: RunConfig, info: DistInfo, sampler: IterationBatchSampler, start: int):
        self.cfg, self.info, self.sampler = cfg, info, sampler
        self.sums: dict[str, float] = {}
        self.n, self.t_last, self.it_last = 0, time.perf_counter(), start
        self.bar = None
        if info.is_main and cfg.train.progress and sys.stderr.isatty():  # not a terminal (a log file): lines
            from tqdm import tqdm

            self.bar = tqdm(total=cfg.train.iters, initial=start, desc=cfg.run.name, dynamic_ncols=True,
                            file=sys.stderr)

    def add(self, done: int, step_terms: dict[str, float], lr: float) -> None:
        t_cfg = self.cfg.train
        for k, v in step_terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.n += 1
        if done % t_cfg.log_interval == 0 or done == t_cfg.iters:
            self._write(done, lr)
        if self.bar is not None:
            self.bar.update(1)

    def _write(self, done: int, lr: float) -> None:
        t_cfg, n = self.cfg.train, self.n
        now_s = time.perf_counter()
        ips = (done - self.it_last) * t_cfg.batch_size / max(now_s - self.t_last, 1e-9)
        row = {"iter": done, "lr": lr, **{k: v / n for k, v in self.sums.items()}, "img_per_s": ips,
               "epoch": self.sampler.position(done)["epoch"]}
        if self.info.is_main:
            append_jsonl(self.cfg.run_dir / "train_log.jsonl", row)
            if self.bar is None:  # one progress line per log_interval (logs, SLURM output)
                terms_text = " ".join(f"{k} {v / n:.4g}" for k, v in self.sums.items())
                print(f"{self.cfg.run.name} iter {done}/{t_cfg.iters} {terms_text} lr {lr:.3g} "
                      f"{ips:.1f} img/s", file=sys.stderr, flush=True)
            else:
                self.bar.set_postfix({k: f"{v / n:.4g}" for k, v in self.sums.items()} |
                                     {"lr": f"{lr:.3g}", "img/s": f"{ips:.1f}"}, refresh=False)
        self.sums, self.n, self.t_last, self.it_last = {}, 0, now_s, done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

