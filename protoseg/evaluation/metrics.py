"""Segmentation metrics as MMSegmentation computes them, accumulated over a whole split.

Pixels whose label is ``ignore_index`` are dropped; a confusion matrix is summed over all images
(never averaged per image). IoU_c = I_c / U_c; mIoU is the mean over classes with U_c > 0 (a class
absent from both labels and predictions is excluded; predicted-but-absent counts as 0). aAcc is the
pixel accuracy; Acc_c = I_c / (label pixels of c), mAcc the mean over classes present in the labels.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


class SegMetric:
    """``update(pred, label)`` per batch, ``reduce_()`` across DDP ranks, then ``compute()``."""

    def __init__(self, num_classes: int, ignore_index: int = 255, device: str | torch.device = "cpu"):
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def reset(self) -> None:
        self.confusion.zero_()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, label: torch.Tensor) -> None:
        """``pred`` and ``label``: integer tensors of the same shape (e.g. [B, H, W]); rows of the
        confusion matrix are labels, columns predictions."""
        if pred.shape != label.shape:
            raise ValueError(f"pred shape {tuple(pred.shape)} != label shape {tuple(label.shape)}")
        pred = pred.reshape(-1).to(self.confusion.device, torch.int64)
        label = label.reshape(-1).to(self.confusion.device, torch.int64)
        keep = label != self.ignore_index
        pred, label = pred[keep], label[keep]
        c = self.num_classes
        if label.numel() and (label.min() < 0 or label.max() >= c):
            bad = torch.unique(label[(label < 0) | (label >= c)])[:10].tolist()
            raise ValueError(f"label values {bad} outside 0..{c - 1} and ignore {self.ignore_index}")
        if pred.numel() and (pred.min() < 0 or pred.max() >= c):
            bad = torch.unique(pred[(pred < 0) | (pred >= c)])[:10].tolist()
            raise ValueError(f"predicted values {bad} outside 0..{c - 1}")
        self.confusion += torch.bincount(label * c + pred, minlength=c * c).view(c, c)

    def reduce_(self) -> "SegMetric":
        """Sum the confusion matrices of all ranks (no-op without torch.distributed)."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.confusion, op=dist.ReduceOp.SUM)
        return self

    def compute(self) -> dict:
        """{"IoU": [C] (nan where U_c = 0), "Acc": [C], "mIoU", "aAcc", "mAcc", "intersection",
        "union", "label_area", "pred_area"} as Python floats / lists."""
        cm = self.confusion.double()
        inter, label_area, pred_area = cm.diag(), cm.sum(1), cm.sum(0)
        union = label_area + pred_area - inter
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.full_like(inter, float("nan")))
        acc = torch.where(label_area > 0, inter / label_area.clamp(min=1),
                          torch.full_like(inter, float("nan")))
        total = label_area.sum()
        return {
            "mIoU": float(iou.nanmean()) if (union > 0).any() else float("nan"),
            "aAcc": float(inter.sum() / total) if total > 0 else float("nan"),
            "mAcc": float(acc.nanmean()) if (label_area > 0).any() else float("nan"),
            "IoU": iou.tolist(),
            "Acc": acc.tolist(),
            "intersection": inter.long().tolist(),
            "union": union.long().tolist(),
            "label_area": label_area.long().tolist(),
            "pred_area": pred_area.long().tolist(),
        }
