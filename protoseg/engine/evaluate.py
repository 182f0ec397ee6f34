"""Evaluation: whole or sliding-window inference over a split, metrics across ranks, and the files.

Outputs in ``out_dir``: ``metrics.json`` (written atomically; the source of truth that tracking and
the tables read), ``per_class_iou.csv`` and ``confusion.png`` (row-normalised confusion matrix). With the prototype
head, ``metrics.json`` also holds ``prototype_diagnostics`` (``protoseg.method.diagnostics``), taken
from the embeddings of the same forwards.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from protoseg.atomic_io import write_bytes_atomic, write_json_atomic
from protoseg.data.dataset import SegmentationDataset, ShardSampler, collate_test
from protoseg.evaluation.inference import inference, slide_windows
from protoseg.evaluation.metrics import SegMetric
from protoseg.heads.prototype import PrototypeHead
from protoseg.method.diagnostics import PrototypeDiagnostics


def build_eval_loader(root: str | Path, spec, split: str, *, num_workers: int = 0, batch_size: int = 1,
                      rank: int = 0, world_size: int = 1) -> torch.utils.data.DataLoader:
    """The evaluation split's loader: ``batch_size`` items per batch (``data.eval_batch_size``; items
    of one size go through the model together in whole-image mode)."""
    ds = SegmentationDataset.from_spec(root, spec, split, train=False)
    return torch.utils.data.DataLoader(
        ds, batch_size=batch_size, sampler=ShardSampler(len(ds), rank, world_size), num_workers=num_workers,
        collate_fn=collate_test, generator=torch.Generator().manual_seed(0))  # no global RNG draw


@torch.no_grad()
def evaluate_model(model: nn.Module, loader, spec, *, device: torch.device | str = "cpu",
                   amp_dtype: torch.dtype | None = None, progress: bool = False) -> dict[str, Any]:
    """mIoU/aAcc/mAcc and per-class IoU of ``model`` on ``loader`` (reduced over DDP ranks).
    The model is put in eval mode and restored to its previous mode afterwards. Logits are resized
    with the model's own ``align_corners`` (as in training)."""
    was_training = model.training
    model.eval()
    metric = SegMetric(spec.num_classes, spec.ignore_index, device=device)
    align_corners = bool(getattr(model, "align_corners", False))
    head = getattr(model, "head", None)
    diag = PrototypeDiagnostics.for_head(head, spec.ignore_index, device) if isinstance(head, PrototypeHead) else None
    windows: list = []  # (label crop) per forward of the current image, in inference's order

    def model_fn(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=torch.device(device).type, dtype=amp_dtype,
                            enabled=amp_dtype is not None):
            out = model(x)
        if diag is not None:
            diag.update(out.head.embeddings, windows.pop(0), head.current_prototypes())
        return out.logits.float()

    items = loader
    if progress:
        from tqdm import tqdm

        items = tqdm(loader, desc="eval", dynamic_ncols=True)
    try:
        for batch in items:
            for image, label in _forward_groups(batch, spec):
                image, label = image.to(device), label.to(device)
                if diag is not None:
                    windows[:] = _label_windows(label, image, spec)
                logits = inference(model_fn, image, spec, tuple(label.shape[-2:]), align_corners=align_corners)
                metric.update(logits.argmax(1), label)
    finally:
        model.train(was_training)
    metric.reduce_()
    result = metric.compute()
    result["confusion"] = metric.confusion.cpu().tolist()
    result["num_classes"] = spec.num_classes
    if diag is not None:
        result["prototype_diagnostics"] = diag.reduce_().compute(head.current_prototypes())
    return result


def _forward_groups(batch: dict, spec):
    """``([B, 3, h, w] images, [B, H, W] labels)`` per forward: consecutive items of one image and
    label size stacked in whole-image mode (the mini scale's twins: one forward per batch), one item
    per forward in sliding-window mode."""
    group: list[tuple[torch.Tensor, torch.Tensor]] = []
    for image, label in zip(batch["image"], batch["label"]):
        if group and (spec.test_mode == "slide" or image.shape != group[0][0].shape
                      or label.shape != group[0][1].shape):
            yield torch.stack([g[0] for g in group]), torch.stack([g[1] for g in group])
            group = []
        group.append((image, label))
    if group:
        yield torch.stack([g[0] for g in group]), torch.stack([g[1] for g in group])


def _label_windows(label: torch.Tensor, image: torch.Tensor, spec) -> list[torch.Tensor]:
    """The label under each window ``inference`` feeds the model (nearest-resized to the image)."""
    h, w = image.shape[-2:]
    lab = label.view(-1, 1, *label.shape[-2:])
    if tuple(lab.shape[-2:]) != (h, w):
        lab = torch.nn.functional.interpolate(lab.float(), size=(h, w), mode="nearest").long()
    if spec.test_mode != "slide":
        return [lab[:, 0]]
    return [lab[:, 0, y1:y2, x1:x2] for y1, y2, x1, x2 in slide_windows(h, w, spec.slide_crop, spec.slide_stride)]


def write_eval_outputs(out_dir: str | Path, metrics: dict[str, Any], class_names, *,
                       extra: dict[str, Any] | None = None, image: bool = True) -> Path:
    """Write ``metrics.json`` (atomic), ``per_class_iou.csv`` and ``confusion.png``; returns the JSON
    path. NaN (a class absent from labels and predictions) is written as ``null``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {k: v for k, v in metrics.items() if k != "confusion"}
    payload = _nan_to_none({**(extra or {}), **payload})
    payload["class_names"] = list(class_names)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["class_id", "class_name", "IoU", "Acc", "label_pixels", "pred_pixels"])
    for i, name in enumerate(class_names):
        iou, acc = metrics["IoU"][i], metrics["Acc"][i]
        w.writerow([i, name, "" if _isnan(iou) else f"{iou:.6f}", "" if _isnan(acc) else f"{acc:.6f}",
                    metrics["label_area"][i], metrics["pred_area"][i]])
    write_bytes_atomic(out_dir / "per_class_iou.csv", buf.getvalue().encode())
    if image and "confusion" in metrics:
        write_bytes_atomic(out_dir / "confusion.png", confusion_png(metrics["confusion"], class_names))
    path = out_dir / "metrics.json"
    write_json_atomic(path, payload)  # last: its presence means the other files are complete
    return path


def confusion_png(confusion, class_names) -> bytes:
    """A row-normalised confusion matrix (labels x predictions) as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = torch.tensor(confusion, dtype=torch.float64)
    cm = cm / cm.sum(1, keepdim=True).clamp(min=1)
    n = cm.shape[0]
    size = min(4 + n * 0.12, 24)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(cm.numpy(), cmap="viridis", vmin=0, vmax=1)
    if n <= 40:
        ax.set_xticks(range(n), [str(c)[:16] for c in class_names], rotation=90, fontsize=6)
        ax.set_yticks(range(n), [str(c)[:16] for c in class_names], fontsize=6)
    ax.set_xlabel("prediction")
    ax.set_ylabel("label")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def _isnan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _nan_to_none(x):
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
