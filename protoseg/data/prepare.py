"""``protoseg prepare``: an official extracted folder -> a prepared root of one uniform layout.

Layout (see docs/data.md)::

    <dst>/images/<split>/<stem>.jpg|png     the official image (bytes copied; re-encoded only if resized)
    <dst>/labels/<split>/<stem>.png         train ids; 8-bit with 255 ignore, or 16-bit with 65535
    <dst>/labels_top<N>/<split>/<stem>.png  ADE20K-Full only: top-N label sets (N < 847)
    <dst>/splits/<split>.txt                the stems of each split, sorted
    <dst>/ranking.tsv                       ADE20K-Full only: the class frequency ranking
    <dst>/manifest.json                     bytes, sha256 and inputs of every output file
    <dst>/meta.json                         written last: its presence marks the root complete

Conversion runs over files in worker processes. Every file is written atomically; ``meta.json`` is
removed when a run starts and rewritten only after every file and the manifest are in place, so
an interrupted or failed run never leaves a root that looks complete. A re-run skips every file
whose manifest entry (size, sha256, inputs) still matches.
"""
from __future__ import annotations

import dataclasses
import datetime
import errno
import time
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

import protoseg
from protoseg.atomic_io import remove_stale_temps, sha256_bytes, write_bytes_atomic, write_json_atomic
from protoseg.data import ranking as ranking_mod
from protoseg.data.errors import DataError
from protoseg.data.formats import get_format
from protoseg.data.image_io import decode_image, encode_jpeg, encode_png
from protoseg.data.manifest import MANIFEST, META, Manifest, entry_is_valid, identity_of
from protoseg.data.parallel import ManifestCollector, default_workers, run_parallel
from protoseg.data.specs import get_spec
from protoseg.data.transforms import resize_nearest

CONVERTER_VERSION = 1
# environment faults a worker does not turn into a per-file error (the CLI exits 74 naming the file)
ENV_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO}


@dataclasses.dataclass(frozen=True)
class Task:
    """One image/label pair to convert (picklable: sent to worker processes)."""

    dataset: str
    root: str
    image_src: str
    label_src: str
    image_out: str  # relative to root
    label_out: str
    src_root: str  # --src: deps name the source files relative to it
    prev_image: dict | None
    prev_label: dict | None
    want_hist: bool


def _dep(path: Path, src_root: Path) -> str:
    """What an output was made from: the source file's path relative to ``--src``, its bytes and
    sha256, and the converter version. Content only (no absolute path, no mtime), so the manifest,
    the data hash and DVC's hash of a root are the same wherever and whenever the same source was
    prepared (issue 22); a re-run hashes each source once to decide what to skip."""
    data = path.read_bytes()
    try:
        rel = path.relative_to(src_root).as_posix()
    except ValueError:
        rel = path.name
    return f"{rel}|{len(data)}|{sha256_bytes(data)}|v{CONVERTER_VERSION}"


def resized_shape(h: int, w: int, max_short: int) -> tuple[int, int] | None:
    """MaskFormer's ADE20K-Full rule: shrink so the short side is ``max_short`` if it is larger."""
    if w >= h > max_short:
        return max_short, round(w / float(h) * max_short)
    if h >= w > max_short:
        return round(h / float(w) * max_short), max_short
    return None


def _entry(data: bytes, dep: str) -> dict:
    return {"bytes": len(data), "sha256": sha256_bytes(data), "dep": dep}


def convert_sample(task: Task) -> tuple[str, object]:
    """Worker: convert one pair. Returns ("ok", {rel: entry}, skipped) or ("error", message)."""
    try:
        return _convert_sample(task)
    except DataError as err:
        return ("error", str(err))
    except OSError as err:
        if err.errno in ENV_ERRNOS:  # disk full, permission denied: stop the whole run (exit 74)
            raise
        return ("error", f"{task.image_src} / {task.label_src}: {type(err).__name__}: {err}")
    except Exception as err:  # anything unexpected still names the files
        return ("error", f"{task.image_src} / {task.label_src}: {type(err).__name__}: {err}")


def _convert_sample(task: Task):
    root, src_root = Path(task.root), Path(task.src_root)
    dep_image, dep_label = _dep(Path(task.image_src), src_root), _dep(Path(task.label_src), src_root)
    if (entry_is_valid(root / task.image_out, task.prev_image, dep_image)
            and entry_is_valid(root / task.label_out, task.prev_label, dep_label)):
        return ("ok", {task.image_out: task.prev_image, task.label_out: task.prev_label}, True)
    fmt = get_format(task.dataset)
    data = Path(task.image_src).read_bytes()
    img = decode_image(data, task.image_src)
    label = fmt.read_label(Path(task.label_src))
    w, h = img.size
    if label.shape != (h, w):
        raise DataError(f"{task.label_src}: label is {label.shape[1]}x{label.shape[0]} (WxH) but image "
                        f"{task.image_src} is {w}x{h}; expected the same size")
    new = resized_shape(h, w, fmt.max_short_side) if fmt.max_short_side else None
    if new is not None:
        rgb = img.convert("RGB").resize((new[1], new[0]), Image.BILINEAR)
        data = encode_jpeg(np.asarray(rgb), quality=95)
        label = resize_nearest(label, new[1], new[0])
    label_bytes = encode_png(label.astype(fmt.label_dtype))
    write_bytes_atomic(root / task.image_out, data)
    write_bytes_atomic(root / task.label_out, label_bytes)
    label_entry = _entry(label_bytes, dep_label)
    if task.want_hist:
        values, counts = np.unique(label, return_counts=True)
        keep = values != fmt.ignore_index
        label_entry["hist"] = {str(int(v)): int(c) for v, c in zip(values[keep], counts[keep])}
    return ("ok", {task.image_out: _entry(data, dep_image), task.label_out: label_entry}, False)


def _remove_unexpected(root: Path, manifest: Manifest, expected: set[str]) -> int:
    """Delete outputs of an older run that the current source no longer produces: only files the
    manifest lists (ours), never anything else in the folder."""
    n = 0
    for rel in sorted(r for r in manifest.files if r not in expected):
        p = root / rel
        if p.is_file() and not p.is_symlink():
            p.unlink()
            n += 1
        del manifest.files[rel]
    return n


def _claim_dst(dst: Path, dataset: str, force: bool) -> Manifest:
    """The manifest of ``dst``; a non-empty ``dst`` without one of ours is refused (``force``: adopted,
    an empty manifest: nothing in it is ever deleted). The manifest is saved before any output is
    written, so every later run knows the folder is ours."""
    manifest = Manifest.load(dst, dataset)
    if not manifest.exists and dst.is_dir() and any(dst.iterdir()):
        if not force:
            raise DataError(f"--dst {dst} is not empty and holds no {MANIFEST} of protoseg prepare; "
                            "refusing to write into (and clean up) a folder this tool did not make. "
                            "Use an empty or new folder, or pass --force to adopt it (files not written "
                            "by prepare are then kept, never deleted)")
    dst.mkdir(parents=True, exist_ok=True)
    if not manifest.exists:
        manifest.save()
    return manifest


def _conversion_tasks(dataset: str, fmt, src: Path, dst: Path, samples: dict, manifest: Manifest) -> list[Task]:
    """One ``Task`` per image/label pair, with the manifest entries of its previous outputs."""
    tasks = []
    for split, items in samples.items():
        for smp in items:
            image_out = f"images/{split}/{smp.stem}{fmt.image_ext}"
            label_out = f"labels/{split}/{smp.stem}.png"
            tasks.append(Task(dataset, str(dst), str(smp.image), str(smp.label), image_out, label_out,
                              str(src), manifest.files.get(image_out),
                              manifest.files.get(label_out),
                              want_hist=dataset == "ade20k-full" and split == "train"))
    return tasks


def _requested_splits(dataset: str, fmt, splits: Iterable[str] | None) -> tuple[str, ...]:
    """The splits to prepare (default: all of the format's); DataError on one the dataset lacks."""
    splits = tuple(splits) if splits else fmt.splits
    for s in splits:
        if s not in fmt.splits and not (dataset == "cityscapes" and s == "test"):
            raise DataError(f"{dataset} has no split {s!r}; expected one of {fmt.splits}")
    return splits


def _complete_root(dst: Path, dataset: str, fmt, spec, samples: dict, manifest, label_sets: dict,
                   ranking_info) -> dict:
    """The split lists, the manifest's identity and, last, ``meta.json`` (``fmt`` and ``spec``: the
    dataset's format and spec), which marks the root complete; returns the meta dict."""
    for split, items in samples.items():
        write_bytes_atomic(dst / "splits" / f"{split}.txt",
                           "".join(s.stem + "\n" for s in items).encode())
    manifest.identity = identity_of(dataset, list(samples), label_sets, fmt.ignore_index)
    manifest.save()
    meta = {
        "complete": True,
        "dataset": dataset,
        "num_classes": spec.num_classes,
        "classes": list(spec.class_names),
        "ignore_index": fmt.ignore_index,
        "label_dtype": np.dtype(fmt.label_dtype).name,
        "image_ext": fmt.image_ext,
        "splits": {s: len(items) for s, items in samples.items()},
        "label_sets": label_sets,
        "ranking": ranking_info,
        "protoseg_version": protoseg.__version__,
        "converter_version": CONVERTER_VERSION,
    }
    write_json_atomic(dst / META, meta)
    return meta


def prepare(dataset: str, src: str | Path, dst: str | Path, *, splits: Iterable[str] | None = None,
            workers: int | None = None, progress: bool = True, topn_by: str = "pixels",
            force: bool = False) -> dict:
    """Prepare ``dataset`` from the official folder ``src`` into ``dst``; returns ``meta.json``'s dict.

    ``dst`` must be empty, absent or a root this function prepared before (it has our manifest);
    ``force=True`` adopts another folder. Only files listed in the manifest are ever deleted."""
    t0 = time.monotonic()
    fmt = get_format(dataset)
    spec = get_spec(dataset)
    src, dst = Path(src).resolve(), Path(dst).resolve()
    splits = _requested_splits(dataset, fmt, splits)
    workers = default_workers() if workers is None else workers

    fmt.check_layout(src)
    samples = {s: fmt.list_samples(src, s) for s in splits}  # raises on unpaired files, empty splits

    if src == dst or dst in src.parents:
        raise DataError(f"--dst {dst} must not be inside --src {src}")
    manifest = _claim_dst(dst, dataset, force)
    (dst / META).unlink(missing_ok=True)  # the root is incomplete from here until the end
    remove_stale_temps(dst)

    tasks = _conversion_tasks(dataset, fmt, src, dst, samples, manifest)
    expected = {t.image_out for t in tasks} | {t.label_out for t in tasks}
    label_sets = {str(spec.num_classes): {"dir": "labels", "num_classes": spec.num_classes,
                                          "full_train_ids": list(range(spec.num_classes))}}
    if dataset == "ade20k-full":
        expected |= {f"labels_top{n}/{t.label_out[len('labels/'):]}"
                     for t in tasks for n in ranking_mod.SUBSET_SIZES}
    removed = _remove_unexpected(dst, manifest, expected)

    collector = ManifestCollector(manifest)
    try:
        run_parallel(convert_sample, tasks, workers=workers, desc=f"prepare {dataset}",
                     progress=progress, on_result=collector)
    except BaseException:
        manifest.save()
        raise
    collector.raise_if_failed(f"preparation of {dataset}")
    manifest.save()

    ranking_info = None
    if dataset == "ade20k-full":
        ranking_info = ranking_mod.build_top_n(dst, manifest, splits, samples, by=topn_by,
                                               workers=workers, progress=progress)
        label_sets.update(ranking_info.pop("label_sets"))
        manifest.save()

    meta = _complete_root(dst, dataset, fmt, spec, samples, manifest, label_sets, ranking_info)
    # where, when and how fast: returned and printed, never written into the root (whose bytes, and so
    # its data hash and DVC hash, depend only on the data; issue 22)
    return {**meta, "source": str(src),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "run": {"files_converted": collector.done, "files_skipped": collector.skipped,
                    "stale_files_removed": removed, "workers": workers,
                    "seconds": round(time.monotonic() - t0, 3)}}
