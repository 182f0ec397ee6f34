"""``protoseg prepare <dataset> --check <root>``: validate a prepared root.

Checks the counts per split (meta.json, splits/*.txt and the files on disk agree), that every
image has a label in every label set, label value ranges, image/label size agreement and,
optionally, every file's sha256 against the manifest.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from protoseg.atomic_io import sha256_file
from protoseg.data.dataset import read_meta
from protoseg.data.errors import DataError
from protoseg.data.image_io import image_size, read_label_png
from protoseg.data.manifest import MANIFEST, META
from protoseg.data.parallel import run_parallel

MAX_REPORTED = 20


@dataclasses.dataclass(frozen=True)
class CheckTask:
    root: str
    image_rel: str
    label_rels: tuple[tuple[str, int], ...]  # (path, number of classes) per label set
    ignore_index: int
    checksums: tuple[tuple[str, str], ...]  # (path, expected sha256); empty unless requested


def check_sample(task: CheckTask) -> tuple[str, list[str]]:
    root, problems = Path(task.root), []
    try:
        w, h = image_size(root / task.image_rel)
    except DataError as err:
        return ("ok", [str(err)])
    for rel, n in task.label_rels:
        try:
            label = read_label_png(root / rel)
        except DataError as err:
            problems.append(str(err))
            continue
        if label.shape != (h, w):
            problems.append(f"{root / rel}: label is {label.shape[1]}x{label.shape[0]} but image "
                            f"{root / task.image_rel} is {w}x{h}")
        bad = np.unique(label[(label >= n) & (label != task.ignore_index)])
        if bad.size:
            problems.append(f"{root / rel}: label values {bad[:10].tolist()} outside 0..{n - 1} "
                            f"and ignore {task.ignore_index}")
    for rel, sha in task.checksums:
        if sha256_file(root / rel) != sha:
            problems.append(f"{root / rel}: sha256 differs from {MANIFEST}")
    return ("ok", problems)


def _listing(folder: Path, ext: str) -> set[str]:
    return {p.name[: -len(ext)] for p in folder.glob("*" + ext)} if folder.is_dir() else set()


def check_root(root: str | Path, *, dataset: str | None = None, workers: int = 1,
               progress: bool = False, checksums: bool = False) -> dict:
    """Validate ``root``; raises DataError listing every problem, else returns a summary."""
    root = Path(root).resolve()
    meta_path = root / META
    meta = read_meta(root)
    if dataset is not None and meta.get("dataset") != dataset:
        raise DataError(f"{meta_path}: root holds {meta.get('dataset')!r}, not {dataset!r}")
    manifest = json.loads((root / MANIFEST).read_text())["files"] if checksums else {}
    problems: list[str] = []
    tasks: list[CheckTask] = []
    ext = meta["image_ext"]
    sets = [(s["dir"], s["num_classes"]) for s in meta["label_sets"].values()]
    for split, count in meta["splits"].items():
        list_path = root / "splits" / f"{split}.txt"
        if not list_path.is_file():
            problems.append(f"{list_path}: missing")
            continue
        stems = [ln for ln in list_path.read_text().splitlines() if ln]
        if not stems:
            problems.append(f"split '{split}' is empty ({list_path})")
        if len(stems) != count:
            problems.append(f"split '{split}': {list_path} lists {len(stems)} stems, "
                            f"{META} says {count}")
        folders = [(root / "images" / split, ext)] + [(root / d / split, ".png") for d, _ in sets]
        for folder, e in folders:
            found = _listing(folder, e)
            missing, extra = sorted(set(stems) - found), sorted(found - set(stems))
            if missing:
                problems.append(f"{folder}: {len(missing)} file(s) missing, e.g. {missing[0]}{e}")
            if extra:
                problems.append(f"{folder}: {len(extra)} unexpected file(s), e.g. {extra[0]}{e}")
        for stem in stems:
            image_rel = f"images/{split}/{stem}{ext}"
            label_rels = tuple((f"{d}/{split}/{stem}.png", n) for d, n in sets)
            sums = tuple((r, manifest[r]["sha256"]) for r in (image_rel, *(x for x, _ in label_rels))
                         if r in manifest) if checksums else ()
            if (root / image_rel).is_file() and all((root / r).is_file() for r, _ in label_rels):
                tasks.append(CheckTask(str(root), image_rel, label_rels, meta["ignore_index"], sums))

    def collect(result):
        problems.extend(result[1])

    run_parallel(check_sample, tasks, workers=workers, desc=f"check {meta['dataset']}",
                 progress=progress, on_result=collect)
    if problems:
        shown = "\n  ".join(problems[:MAX_REPORTED])
        more = f"\n  ... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
        raise DataError(f"{root}: {len(problems)} problem(s):\n  {shown}{more}")
    return {"root": str(root), "dataset": meta["dataset"], "splits": meta["splits"],
            "label_sets": [d for d, _ in sets], "samples_checked": len(tasks),
            "checksums_verified": checksums}
