"""Atomic file writes (temp file in the same folder, then ``os.replace``) and checksums.

Written files get the mode ``open()`` would give them (``0o666 & ~umask``; ``mkstemp`` alone gives
0600). Temp names are ``.tmp-<name>.<random>``; ``remove_stale_temps`` deletes only files of that
pattern (those of a killed writer).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

TMP_PREFIX = ".tmp-"
TMP_RE = re.compile(r"^\.tmp-.+\.[a-z0-9_]{8}$")  # TMP_PREFIX + name + "." + mkstemp's 8 random characters


def current_umask() -> int:
    """The process umask, read without changing it (Linux: /proc; elsewhere set and restore)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0o666 minus the umask."""
    return 0o666 & ~current_umask()


@contextlib.contextmanager
def atomic_writer(path: str | Path, *, fsync: bool = False) -> Iterator[BinaryIO]:
    """A binary file that becomes ``path`` only when the block ends without error: readers see
    either the old file or the whole new one (temp file in the same folder, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(err, OSError) and err.filename is None and err.errno is not None:
            raise OSError(err.errno, err.strerror, str(path)) from None  # name the file (disk full, ...)
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see ``atomic_writer``)."""
    with atomic_writer(path) as f:
        f.write(data)


def write_json_atomic(path: str | Path, obj) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_json(obj) -> str:
    """sha256 of an object's canonical JSON (sorted keys, no spaces, other types as str): the one
    digest of configs (run keys, the workflow's config and plan parameters)."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode())


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_temp_name(name: str) -> bool:
    return bool(TMP_RE.match(name))


def remove_stale_temps(root: str | Path, *, recursive: bool = True) -> int:
    """Delete temp files of our pattern (``.tmp-<name>.<random>``) that an interrupted writer left
    under ``root`` (never taken as outputs; regular files only, no symlinks). Returns the count."""
    root = Path(root)
    if not root.is_dir():
        return 0
    n = 0
    for p in (root.rglob(TMP_PREFIX + "*") if recursive else root.glob(TMP_PREFIX + "*")):
        if is_temp_name(p.name) and p.is_file() and not p.is_symlink():
            p.unlink()
            n += 1
    return n
