"""Prototype diagnostics: do a class's K prototypes stay distinct, and are they all used?

Pure tensor functions over prototypes ``[C, K, D]`` plus ``PrototypeDiagnostics``, an accumulator the
evaluation loop feeds with the prototype head's pixel embeddings of each forward (no extra pass):

- ``prototype_cosine_spread``: mean pairwise cosine between a class's K prototypes (1 = collapsed);
- ``win_counts``: of the pixels labelled c, how many each of c's K prototypes wins (the argmax of
  Eq. 5 restricted to the label's own class, i.e. the prototype a pixel would be assigned to);
- ``usage_entropy``: entropy of each class's win shares (raw, nats, and normalised by ``log K``);
- ``dead_prototypes``: prototypes that win no pixel.
K = 1 has no pairs and no choice: spread and entropies are NaN.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .similarity import similarity


def prototype_cosine_spread(prototypes: Tensor) -> Tensor:
    """``[C, K, D] -> [C]``: mean cosine over the ``K(K-1)/2`` distinct prototype pairs; NaN for K=1."""
    c, k, _ = prototypes.shape
    if k < 2:
        return torch.full((c,), float("nan"), dtype=torch.float64, device=prototypes.device)
    p = F.normalize(prototypes.double(), dim=-1)
    gram = p @ p.transpose(1, 2)  # [C, K, K]
    off = ~torch.eye(k, dtype=torch.bool, device=p.device)
    return gram[:, off].mean(dim=1)


def win_counts(embeddings: Tensor, labels: Tensor, prototypes: Tensor, *, distance: str = "cosine",
               huber_delta: float = 1.0, ignore_index: int = 255, max_chunk_elements: int = 1 << 24) -> Tensor:
    """``[N, D], [N], [C, K, D] -> [C, K]`` int64: for each pixel labelled ``c`` (labels outside
    ``[0, C)``, e.g. ``ignore_index``, are skipped) the argmax over c's K prototypes of the
    similarity (cosine of the l2-normalised vectors by default; the head's distance otherwise)."""
    c, k, d = prototypes.shape
    counts = torch.zeros(c * k, dtype=torch.long, device=embeddings.device)
    labels = labels.reshape(-1).to(embeddings.device)
    keep = (labels >= 0) & (labels < c) & (labels != ignore_index)
    emb, lab = embeddings[keep], labels[keep].long()
    flat = prototypes.reshape(c * k, d).to(emb.dtype)
    if distance == "cosine":
        emb, flat = F.normalize(emb, dim=1), F.normalize(flat, dim=1)
    chunk = max(1, max_chunk_elements // (c * k))
    for start in range(0, emb.shape[0], chunk):
        e, lb = emb[start:start + chunk], lab[start:start + chunk]
        sim = similarity(e, flat, distance, huber_delta).view(-1, c, k)  # [n, C, K]
        own = sim.gather(1, lb.view(-1, 1, 1).expand(-1, 1, k)).squeeze(1)  # [n, K]
        counts += torch.bincount(lb * k + own.argmax(dim=1), minlength=c * k)
    return counts.view(c, k)


def usage_entropy(counts: Tensor, *, normalized: bool = True) -> Tensor:
    """``[C, K] -> [C]`` entropy (nats) of each class's win shares; ``normalized`` divides by
    ``log K`` (1 = evenly used, 0 = one prototype wins everything). NaN for K=1 or a class with no
    pixels."""
    c, k = counts.shape
    counts = counts.double()
    total = counts.sum(dim=1, keepdim=True)
    share = counts / total.clamp(min=1)
    ent = -torch.where(share > 0, share * share.log(), torch.zeros_like(share)).sum(dim=1)
    ent = torch.where(total.squeeze(1) > 0, ent, torch.full_like(ent, float("nan")))
    if normalized:
        ent = ent / math.log(k) if k > 1 else torch.full_like(ent, float("nan"))
    return ent


def dead_prototypes(counts: Tensor) -> Tensor:
    """``[C, K] -> [C]`` int64: prototypes of each class that win no pixel."""
    return (counts == 0).sum(dim=1)


class PrototypeDiagnostics:
    """Win counts accumulated over an evaluation, then the per-class diagnostics and their summary."""

    def __init__(self, num_classes: int, num_prototypes: int, *, distance: str = "cosine",
                 huber_delta: float = 1.0, ignore_index: int = 255, device: torch.device | str = "cpu") -> None:
        self.num_classes, self.num_prototypes = num_classes, num_prototypes
        self.distance, self.huber_delta, self.ignore_index = distance, huber_delta, ignore_index
        self.counts = torch.zeros(num_classes, num_prototypes, dtype=torch.long, device=device)

    @classmethod
    def for_head(cls, head, ignore_index: int = 255, device: torch.device | str = "cpu") -> "PrototypeDiagnostics":
        return cls(head.num_classes, head.num_prototypes, distance=head.config.distance,
                   huber_delta=head.config.huber_delta, ignore_index=ignore_index, device=device)

    @torch.no_grad()
    def update(self, embeddings: Tensor, labels: Tensor, prototypes: Tensor) -> None:
        """``embeddings [B, D, h, w]`` (the head's, ``HeadOutput.embeddings``), ``labels [B, H, W]``
        at any resolution: brought to ``(h, w)`` by nearest neighbour, as training does."""
        b, d, h, w = embeddings.shape
        lab = labels.reshape(b, 1, *labels.shape[-2:]).float()
        if tuple(lab.shape[-2:]) != (h, w):
            lab = F.interpolate(lab, size=(h, w), mode="nearest")
        emb = embeddings.float().permute(0, 2, 3, 1).reshape(-1, d)
        self.counts += win_counts(emb, lab.view(-1).long(), prototypes.float(), distance=self.distance,
                                  huber_delta=self.huber_delta, ignore_index=self.ignore_index).to(self.counts.device)

    def reduce_(self) -> "PrototypeDiagnostics":
        """Sum the counts of all ranks (no-op without torch.distributed)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.counts, op=dist.ReduceOp.SUM)
        return self

    def compute(self, prototypes: Tensor) -> dict[str, Any]:
        """Per-class lists (NaN where undefined: K=1, or a class with no labelled pixel) and the
        means over the classes with labelled pixels: ``proto_mean_pairwise_cos``,
        ``proto_usage_entropy`` (normalised), ``proto_dead_fraction``, ``proto_dead_mean``."""
        counts = self.counts.cpu()
        present = counts.sum(dim=1) > 0
        nan = float("nan")
        cos = prototype_cosine_spread(prototypes.detach().cpu())
        ent_norm = usage_entropy(counts)
        ent_raw = usage_entropy(counts, normalized=False)
        dead = dead_prototypes(counts)

        def mean(x: Tensor) -> float:
            x = x.double()[present]
            x = x[~x.isnan()]
            return float(x.mean()) if x.numel() else nan

        return {
            "num_prototypes": self.num_prototypes,
            "pairwise_cos": cos.tolist(),
            "usage_entropy": ent_norm.tolist(),
            "usage_entropy_raw": ent_raw.tolist(),
            "dead": [int(v) if p else None for v, p in zip(dead.tolist(), present.tolist())],
            "win_counts": counts.tolist(),
            "proto_mean_pairwise_cos": mean(cos),
            "proto_usage_entropy": mean(ent_norm),
            "proto_usage_entropy_raw": mean(ent_raw),
            "proto_dead_fraction": mean(dead / self.num_prototypes),
            "proto_dead_mean": mean(dead),
        }


SUMMARY_KEYS = ("proto_mean_pairwise_cos", "proto_usage_entropy", "proto_dead_fraction")
