"""Atomic file writes (temp file in the same folder, then ``os.replace``) and checksums."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

TMP_PREFIX = ".tmp-"


@contextlib.contextmanager
def atomic_writer(path: str | Path, *, fsync: bool = False) -> Iterator[BinaryIO]:
    """A binary file that becomes ``path`` only when the block ends without error: readers see
    either the old file or the whole new one (temp file in the same folder, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see ``atomic_writer``)."""
    with atomic_writer(path) as f:
        f.write(data)


def write_json_atomic(path: str | Path, obj) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def remove_stale_temps(root: str | Path) -> int:
    """Delete temp files left by an interrupted run (never taken as outputs). Returns the count."""
    n = 0
    for p in Path(root).rglob(TMP_PREFIX + "*"):
        if p.is_file():
            p.unlink()
            n += 1
    return n
