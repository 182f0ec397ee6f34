"""Reading foreign checkpoints safely: ``torch.load(weights_only=True)`` with a narrow allow-list.

The release's ``config_dict`` holds numpy scalars (``performance`` from ``np.nanmean``); the
allow-list admits only numpy's scalar reconstruction and its dtypes, never arbitrary classes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConvertError


def _numpy_scalar_globals() -> list:
    """numpy's scalar unpickling entry point and the dtype classes of the number types."""
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar
    dtypes = [np.dtype]
    for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "BoolDType"):
        cls = getattr(np.dtypes, name, None)
        if cls is not None:
            dtypes.append(cls)
    return [scalar, *dtypes]


def load_foreign(path: str | Path) -> Any:
    """Load ``path`` on CPU with ``weights_only=True`` plus numpy scalars; anything else refused."""
    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"{path}: file not found")
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConvertError(f"{path}: not loadable as weights ({type(err).__name__}: {first})") from None


def state_dict_of(obj: Any, path: str | Path, keys: tuple[str, ...] = ("state_dict", "model")) -> dict:
    """The tensor mapping of a loaded file: ``obj[k]`` for the first ``k`` of ``keys`` present, else
    ``obj`` itself (a bare state dict)."""
    if not isinstance(obj, dict):
        raise ConvertError(f"{path}: expected a dict, got {type(obj).__name__}")
    for k in keys:
        if k in obj and isinstance(obj[k], dict):
            obj = obj[k]
            break
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise ConvertError(f"{path}: no tensors (looked for {', '.join(keys)} or a bare state dict)")
    return sd


def strip_prefix(sd: dict, prefix: str) -> dict:
    """Drop ``prefix`` (e.g. ``module.``) from every key if the first key has it."""
    if sd and next(iter(sd)).startswith(prefix):
        return {k.removeprefix(prefix): v for k, v in sd.items()}
    return sd


def check_keys(sd: dict, expected: dict, where: str) -> None:
    """``sd`` has exactly the keys and shapes of ``expected`` (a state dict); else one clear error."""
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [f"{k}: {tuple(sd[k].shape)} vs {tuple(expected[k].shape)}" for k in expected
              if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first {unexpected[:3]})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (first {shapes[:2]})")
        raise ConvertError(f"{where}: " + "; ".join(parts))
