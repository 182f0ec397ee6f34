"""What a prepared root holds, checked against what a config expects (issue 19), before any model is built.

``protoseg prepare`` (and so ``make-mini`` + ``prepare``) records in the root's ``manifest.json`` an
``identity``: the dataset, the split names, per label set its class count (ADE20K-Full: 847 and the
top-N vocabularies), the ignore value and the label range (``protoseg.data.manifest.identity_of``).
``check_root_identity`` compares it with a run's data section and raises ``DataError`` with one line
naming the root, what it holds and what the config expects. A root prepared before identities were
recorded is checked against its ``meta.json`` (which holds the same facts) with a warning that says
how to re-check it. Torch-free: read by the config validation.

``check_labels`` is the loops' guard: a label value outside ``[0, C)`` plus the ignore value is a
``DataError`` naming the file, never an index error from inside torch.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from protoseg.data.errors import DataError
from protoseg.data.manifest import MANIFEST, META

RECHECK = "`protoseg prepare {dataset} --check {root}` verifies it; re-running `protoseg prepare` records it"


def read_identity(root: str | Path) -> tuple[dict, bool]:
    """(identity, recorded): the manifest's identity, else (an older root) the same facts from meta.json
    with ``recorded`` False. Raises DataError when the root has neither."""
    root = Path(root)
    try:
        man = json.loads((root / MANIFEST).read_text()) if (root / MANIFEST).is_file() else {}
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"{root / MANIFEST}: not valid JSON ({err}); re-run `protoseg prepare`") from None
    ident = man.get("identity") if isinstance(man, dict) else None
    if isinstance(ident, dict):
        return ident, True
    try:
        meta = json.loads((root / META).read_text())
        sets = {str(k): {"dir": v["dir"], "num_classes": int(v["num_classes"])}
                for k, v in meta["label_sets"].items()}
        num = int(meta["num_classes"])
        return ({"dataset": meta["dataset"], "splits": sorted(meta["splits"]), "num_classes": num,
                 "label_sets": sets, "ignore_index": int(meta["ignore_index"]),
                 "label_range": [0, num - 1]}, False)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise DataError(f"{root}: not a complete prepared root of protoseg prepare (no identity in {MANIFEST}, "
                        f"no readable {META}); run `protoseg prepare` first") from None


def _holds(ident: dict) -> str:
    sets = ", ".join(f"{v['dir']}: {v['num_classes']} classes" for v in ident["label_sets"].values())
    return (f"{ident['dataset']!r} (splits {', '.join(ident['splits'])}; {sets}; ignore {ident['ignore_index']})")


def check_root_identity(root: str | Path, *, dataset: str, num_classes: int, label_dir: str, ignore_index: int,
                        splits: tuple[str, ...] = (), what: str = "data.root") -> dict:
    """Refuse (DataError, one line) a root that does not hold what the config expects: another dataset,
    no label set ``label_dir`` of ``num_classes`` classes (ADE20K-Full top-N), another ignore value, a
    missing split. Returns the identity."""
    ident, recorded = read_identity(root)
    expects = (f"the config expects {dataset!r} with {num_classes} classes in {label_dir}/, ignore "
               f"{ignore_index}" + (f", splits {', '.join(splits)}" if splits else ""))
    sets = {v["dir"]: v["num_classes"] for v in ident.get("label_sets", {}).values()}
    problems = []
    if ident.get("dataset") != dataset:
        problems.append("another dataset")
    elif sets.get(label_dir) != num_classes:
        problems.append(f"no {num_classes}-class label set in {label_dir}/")
    elif int(ident.get("ignore_index", -1)) != int(ignore_index):
        problems.append("another ignore value")
    missing = [s for s in splits if s not in ident.get("splits", [])]
    if missing and not problems:
        problems.append(f"no split {', '.join(missing)}")
    if problems:
        raise DataError(f"{what}={root} holds {_holds(ident)}, but {expects} ({'; '.join(problems)}); "
                        "point data.root at a root prepared for this dataset or fix the config")
    if not recorded:
        warnings.warn(f"{what}={root} was prepared before roots recorded what they hold (no identity in "
                      f"{MANIFEST}); checked against its {META}. "
                      + RECHECK.format(dataset=dataset, root=root), RuntimeWarning, stacklevel=2)
    return ident


def check_labels(labels, num_classes: int, ignore_index: int, names=None) -> None:
    """A batch of labels (tensor or array, [B, H, W] or [H, W]) may hold only ``[0, num_classes)`` and
    ``ignore_index``; else DataError naming the file (``names``: the batch's stems or paths)."""
    arr = labels.detach().cpu().numpy() if hasattr(labels, "detach") else np.asarray(labels)
    bad = ((arr < 0) | (arr >= num_classes)) & (arr != ignore_index)
    if not bad.any():
        return
    arr = arr.reshape((-1, *arr.shape[-2:])) if arr.ndim >= 2 else arr.reshape(1, 1, -1)
    bad = bad.reshape(arr.shape)
    i = int(np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1))[0])
    values = sorted({int(v) for v in np.unique(arr[i][bad[i]])})[:5]
    name = names[i] if names is not None and i < len(names) else f"item {i} of the batch"
    raise DataError(f"{name}: label values {values} are outside [0, {num_classes}) and not the ignore value "
                    f"{ignore_index}; the root does not hold the config's label set (check it with "
                    "`protoseg prepare DATASET --check ROOT`)")
