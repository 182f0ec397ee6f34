"""Backbone weight files written by ``protoseg convert-checkpoint`` (ImageNet formats).

A file is ``{"format": "protoseg-backbone", "version": 1, "backbone": NAME, "source_format": FMT,
"state_dict": {...}}`` whose state dict has exactly the keys of ``build_backbone(NAME).state_dict()``.
``ModelConfig.pretrained=PATH`` to such a file builds the backbone at random and loads it strictly.
"""
from __future__ import annotations

from pathlib import Path

import torch

BACKBONE_FILE_FORMAT = "protoseg-backbone"


def read_backbone_file(path: str | Path) -> dict | None:
    """The file's dict if ``path`` is a protoseg backbone file, else ``None`` (another format)."""
    path = Path(path).expanduser()
    if not path.is_file() or path.suffix == ".safetensors":
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not ours: the backbone's own loader reports it
        return None
    return obj if isinstance(obj, dict) and obj.get("format") == BACKBONE_FILE_FORMAT else None


def load_backbone_file(backbone: torch.nn.Module, name: str, obj: dict, path: str | Path) -> None:
    """Strict load of a backbone file into ``backbone`` (built as ``name``); a clear error otherwise."""
    if obj.get("backbone") != name:
        raise ValueError(f"{path}: weights for backbone {obj.get('backbone')!r}, not {name!r} "
                         "(ModelConfig.pretrained)")
    try:
        result = backbone.load_state_dict(obj["state_dict"], strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"{path}: does not fit backbone {name!r}: {str(err).splitlines()[-1].strip()}") from None
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{path}: does not fit backbone {name!r}: missing {result.missing_keys[:3]}, "
                         f"unexpected {result.unexpected_keys[:3]}")


def save_backbone_file(path: str | Path, name: str, state_dict: dict, source_format: str) -> Path:
    """Write a backbone file atomically."""
    from protoseg.atomic_io import write_bytes_atomic
    import io

    buf = io.BytesIO()
    torch.save({"format": BACKBONE_FILE_FORMAT, "version": 1, "backbone": name,
                "source_format": source_format, "state_dict": state_dict}, buf)
    write_bytes_atomic(Path(path), buf.getvalue())
    return Path(path)
