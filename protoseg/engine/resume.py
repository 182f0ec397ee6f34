"""What a resume must match: the checkpoint's config (up to the keys that never change training)
and the prepared data it was trained on (its data hash), unless ``--allow-data-change``."""
from __future__ import annotations

import warnings
from pathlib import Path

from protoseg.config import ConfigError, flatten_dict

from .provenance import data_hash, read_run_info

# keys that may differ between a checkpoint's config and a resuming run's
RESUME_FREE_KEYS = {"run.output_dir", "data.root", "data.num_workers", "train.progress", "train.log_interval",
                    "train.keep_ckpts", "train.final_ckpt", "data.eval_batch_size"}


def check_resume_data(ck: dict, run_dir: Path, root: str, path: Path, allow: bool) -> str | None:
    """The data hash the checkpoint was trained on must be the current root's (else ConfigError,
    naming both), unless ``allow``. Returns the previous hash when it differs and is allowed."""
    before = ck.get("data_hash")
    if before is None:  # a checkpoint of an older version: the run's last recorded attempt
        attempts = read_run_info(run_dir / "run_info.json").get("attempts") or []
        before = attempts[-1].get("data_hash") if attempts and isinstance(attempts[-1], dict) else None
    now = data_hash(root)
    if before is None or before == now:
        return None
    if not allow:
        raise ConfigError(f"{path}: cannot resume, the data changed: the checkpoint was trained on data hash "
                          f"{before}, data.root={root} has {now}. Point data.root at the original prepared "
                          "root, or pass --allow-data-change to continue on the new data (recorded in "
                          "run_info.json)")
    warnings.warn(f"resuming on changed data (data hash {before} -> {now}); recorded in run_info.json",
                  RuntimeWarning, stacklevel=2)
    return before


def check_resume_config(saved: dict, current: dict, path: Path) -> None:
    """The checkpoint's config ``saved`` must equal ``current`` up to ``RESUME_FREE_KEYS`` and
    ``tracking.*`` (else ConfigError naming the differing keys)."""
    a, b = flatten_dict(saved), flatten_dict(current)
    diff = sorted(k for k in set(a) | set(b) if k not in RESUME_FREE_KEYS and not k.startswith("tracking.")
                  and a.get(k) != b.get(k))  # tracking (table, row, paper value) never changes training
    if diff:
        raise ConfigError(f"{path}: cannot resume, the config differs in {diff} "
                          f"(checkpoint: {[a.get(k) for k in diff]}, now: {[b.get(k) for k in diff]})")

