"""Checkpoints: atomic writes, everything an exact resume needs, ``--resume auto``.

A checkpoint (``<run>/checkpoints/iter_00001000.pt``, ``final.pt`` at the end) holds the model state
dict (prototype buffers included), optimizer, scheduler, grad scaler, the iteration, the data-order
position, the resolved config and the RNG states (python, numpy, torch CPU and CUDA) of EVERY rank
(gathered to rank 0, which writes the file). Files are written to a temporary name in the same folder
and moved into place with ``os.replace``: a reader sees the old file or the complete new one. Every
value is loadable with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import random
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from protoseg.atomic_io import atomic_writer

CKPT_RE = re.compile(r"^iter_(\d{8})\.pt$")
FORMAT_VERSION = 1


def checkpoint_name(iteration: int) -> str:
    return f"iter_{iteration:08d}.pt"


# ---- RNG states -----------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """This process's RNG states as weights_only-loadable values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": _to_lists(random.getstate()),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _to_lists(x):
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


# ---- save / load ----------------------------------------------------------------------------------
class _WriteErrors:
    """A file object that remembers the ``OSError`` of a failed write: ``torch.save`` turns it into a
    ``RuntimeError`` ("file write failed"), which would hide ENOSPC/EACCES from the caller."""

    def __init__(self, f):
        self._f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as err:
            self.error = err
            raise

    def __getattr__(self, name):
        return getattr(self._f, name)


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync, then ``os.replace``. A failed write
    (disk full, ...) raises its ``OSError`` naming ``path``; the temp file is removed and an older
    file at ``path`` stays as it was."""
    path = Path(path)
    try:
        with atomic_writer(path, fsync=True) as f:
            w = _WriteErrors(f)
            try:
                torch.save(obj, w)
            except RuntimeError:
                if w.error is not None:
                    raise w.error from None
                raise
    except OSError as err:
        if err.filename is None:
            raise OSError(err.errno, err.strerror, str(path)) from None
        raise
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint on CPU; a missing, truncated or foreign file raises ``CheckpointError``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises RuntimeError/EOFError/UnpicklingError
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT_VERSION or "model" not in ckpt:
        raise CheckpointError(f"{path}: not a protoseg checkpoint (format {FORMAT_VERSION})")
    return ckpt


class CheckpointError(RuntimeError):
    pass


def list_checkpoints(ckpt_dir: str | Path) -> list[Path]:
    """Periodic checkpoints of a run, oldest first (by iteration); ``final.pt`` last if present."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = sorted((int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := CKPT_RE.match(p.name)))
    out = [p for _, p in found]
    if (ckpt_dir / "final.pt").is_file():
        out.append(ckpt_dir / "final.pt")
    return out


def find_resume(ckpt_dir: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads (highest iteration); unreadable ones are skipped with a
    warning naming the file. ``None`` when there is none."""
    candidates = list_checkpoints(ckpt_dir)
    loaded = []
    for path in reversed(candidates):
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as err:
            warnings.warn(f"skipping checkpoint: {err}", RuntimeWarning, stacklevel=2)
            continue
        loaded.append((int(ckpt["iteration"]), path, ckpt))
        if path.name != "final.pt":
            break  # a periodic one is the newest periodic; final.pt (if valid) was seen first
    if not loaded:
        return None
    _, path, ckpt = max(loaded, key=lambda x: x[0])
    return path, ckpt


def prune_checkpoints(ckpt_dir: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` newest periodic checkpoints (``keep=0``: keep all)."""
    if keep <= 0:
        return
    periodic = [p for p in list_checkpoints(ckpt_dir) if p.name != "final.pt"]
    for p in periodic[:-keep]:
        p.unlink(missing_ok=True)
