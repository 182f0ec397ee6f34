"""The manifest of a prepared root: one entry per output file (bytes, sha256, what it was made from).

A file counts as done only if the manifest has its entry, the file on disk has the recorded size
and checksum, and the entry's ``dep`` (its inputs and the converter version) is unchanged. The
manifest is saved atomically after the files it describes, so an entry never points at a partial
file; files written after the last save are simply redone.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from protoseg.atomic_io import sha256_file, write_json_atomic
from protoseg.data.errors import DataError

MANIFEST = "manifest.json"
META = "meta.json"  # written last: its presence marks a prepared root complete
FORMAT_VERSION = 1


def entry_is_valid(path: Path, entry: dict | None, dep: str) -> bool:
    """Whether ``path`` is a finished output according to ``entry`` (checks size, then sha256)."""
    if not entry or entry.get("dep") != dep:
        return False
    try:
        if os.path.getsize(path) != entry["bytes"]:
            return False
    except OSError:
        return False
    return sha256_file(path) == entry["sha256"]


class Manifest:
    def __init__(self, root: Path, dataset: str, files: dict[str, dict] | None = None, *, exists: bool = False):
        self.root, self.dataset = Path(root), dataset
        self.files: dict[str, dict] = files or {}
        self.exists = exists  # read from disk (the folder is a root that prepare wrote)

    @classmethod
    def load(cls, root: str | Path, dataset: str) -> "Manifest":
        path = Path(root) / MANIFEST
        if not path.is_file():
            return cls(Path(root), dataset)
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(f"{path}: not valid JSON ({err}); delete it to rebuild the root") from None
        if (not isinstance(data, dict) or data.get("format") != FORMAT_VERSION
                or not isinstance(data.get("files"), dict)):
            raise DataError(f"{path}: not a manifest of protoseg prepare (expected format {FORMAT_VERSION} "
                            "with a 'files' mapping); use another --dst")
        if data.get("dataset") != dataset:
            raise DataError(f"{path}: root was prepared for {data.get('dataset')!r}, not {dataset!r}; "
                            "use another --dst")
        return cls(Path(root), dataset, data["files"], exists=True)

    def save(self) -> None:
        write_json_atomic(self.root / MANIFEST, {"format": FORMAT_VERSION, "dataset": self.dataset,
                                                 "files": dict(sorted(self.files.items()))})
        self.exists = True
