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


def identity_of(dataset: str, splits: list[str], label_sets: dict, ignore_index: int) -> dict:
    """What a prepared root holds (issue 19), as the manifest records it: the dataset, the split names,
    per label set (folder) its class count (ADE20K-Full: 847 and the top-N vocabularies), the ignore
    value and the label range ``[0, num_classes)`` of the main label set."""
    sets = {str(k): {"dir": v["dir"], "num_classes": int(v["num_classes"])} for k, v in label_sets.items()}
    main = next((v for v in sets.values() if v["dir"] == "labels"), None)
    num_classes = main["num_classes"] if main else max(v["num_classes"] for v in sets.values())
    return {"dataset": dataset, "splits": sorted(splits), "num_classes": num_classes, "label_sets": sets,
            "ignore_index": int(ignore_index), "label_range": [0, num_classes - 1]}


class Manifest:
    def __init__(self, root: Path, dataset: str, files: dict[str, dict] | None = None, *, exists: bool = False,
                 identity: dict | None = None):
        self.root, self.dataset = Path(root), dataset
        self.files: dict[str, dict] = files or {}
        self.exists = exists  # read from disk (the folder is a root that prepare wrote)
        self.identity = identity  # what the root holds (identity_of), set when a preparation finishes

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
        identity = data.get("identity") if isinstance(data.get("identity"), dict) else None
        return cls(Path(root), dataset, data["files"], exists=True, identity=identity)

    def save(self) -> None:
        body = {"format": FORMAT_VERSION, "dataset": self.dataset}
        if self.identity is not None:
            body["identity"] = self.identity
        write_json_atomic(self.root / MANIFEST, {**body, "files": dict(sorted(self.files.items()))})
        self.exists = True
