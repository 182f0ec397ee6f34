"""Pixel-prototype similarities, class scores (Eq. 6) and nearest-prototype prediction (Eq. 5).

A similarity is "higher is closer": the cosine for the default distance, the negated distance for
the Euclidean and Huberized ablations (Table 5d). ``prototype_scores`` computes every
pixel-prototype similarity exactly once and derives from it all that training needs: the class
scores (Eq. 6), each pixel's similarities to its own class's prototypes (the Sinkhorn input and the
PPC/PPD targets) and the PPC normaliser over all C*K prototypes (Eq. 11). Pixels are processed in
chunks so the ``[N, C*K]`` matrix is never held whole; under autograd each chunk is checkpointed
(recomputed in backward) instead of kept.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint


def similarity(embeddings: Tensor, prototypes: Tensor, distance: str = "cosine",
               huber_delta: float = 1.0) -> Tensor:
    """``[N, D] x [M, D] -> [N, M]`` similarities (higher = closer).

    cosine: ``i^T p`` of l2-normalised inputs (Eq. 5's negative distance);
    euclidean: ``-||i - p||`` of un-normalised vectors; huberized: ``-(sqrt(||i - p||^2 + d^2) - d)``,
    the smooth Huber-like approximation the paper uses for the non-differentiable point at 0.
    """
    dot = embeddings @ prototypes.t()
    if distance == "cosine":
        return dot
    sq = (embeddings.pow(2).sum(1, keepdim=True) + prototypes.pow(2).sum(1) - 2 * dot).clamp_min(0)
    if distance == "euclidean":
        return -sq.clamp_min(1e-12).sqrt()
    if distance == "huberized":
        return -((sq + huber_delta**2).sqrt() - huber_delta)
    raise ValueError(f"distance={distance!r}: expected cosine, euclidean or huberized")


def class_scores(sim: Tensor, num_prototypes: int) -> Tensor:
    """``[N, C*K] -> [N, C]``: a class's score is its closest prototype's similarity (Eq. 6)."""
    return sim.unflatten(-1, (-1, num_prototypes)).amax(-1)


def nearest_prototype(sim: Tensor, num_prototypes: int) -> tuple[Tensor, Tensor]:
    """Winner-take-all over all C*K prototypes (Eq. 5): ``(class [N], prototype-in-class [N])``."""
    best = sim.argmax(dim=-1)
    return best // num_prototypes, best % num_prototypes


@dataclass
class PrototypeScores:
    """What one pass over the pixel-prototype similarities yields."""

    class_sim: Tensor  # [N, C]: Eq. 6 scores (max over each class's K prototypes)
    own_sim: Tensor | None = None  # [N, K]: similarity to the K prototypes of the pixel's label
    ppc_lse: Tensor | None = None  # [N]: logsumexp over all C*K of sim / tau (Eq. 11 normaliser)


def prototype_scores(embeddings: Tensor, prototypes: Tensor, labels: Tensor | None = None, *,
                     distance: str = "cosine", ppc_temperature: float = 0.1, huber_delta: float = 1.0,
                     max_chunk_elements: int = 1 << 26) -> PrototypeScores:
    """Class scores and, given labels, the PPC/PPD/Sinkhorn inputs, from one similarity pass.

    Args:
        embeddings: ``[N, D]`` pixel embeddings (l2-normalised for cosine).
        prototypes: ``[C, K, D]``.
        labels: ``[N]`` class per pixel for training; values outside ``[0, C)`` (ignored pixels)
            get an ``own_sim`` row of class 0 that callers must mask out.
    Returns:
        ``PrototypeScores``; ``own_sim`` and ``ppc_lse`` only when labels are given.
    """
    num_classes, k, d = prototypes.shape
    flat = prototypes.reshape(num_classes * k, d).to(embeddings.dtype)
    n = embeddings.shape[0]
    if labels is not None:
        labels = labels.clamp(0, num_classes - 1)
    chunk = max(1, max_chunk_elements // (num_classes * k))

    def run(emb: Tensor, lab: Tensor | None) -> tuple[Tensor, ...]:
        sim = similarity(emb, flat, distance, huber_delta)  # [n, C*K], computed once
        per_class = sim.unflatten(1, (num_classes, k))
        scores = per_class.amax(-1)  # Eq. 6
        if lab is None:
            return (scores,)
        own = per_class.gather(1, lab.view(-1, 1, 1).expand(-1, 1, k)).squeeze(1)
        lse = torch.logsumexp(sim.float() / ppc_temperature, dim=1)  # Eq. 11 denominator, fp32
        return scores, own, lse

    use_checkpoint = torch.is_grad_enabled() and embeddings.requires_grad and n > chunk
    parts = []
    for start in range(0, max(n, 1), chunk):
        emb = embeddings[start:start + chunk]
        lab = None if labels is None else labels[start:start + chunk]
        if use_checkpoint:
            parts.append(checkpoint(run, emb, lab, use_reentrant=False))
        else:
            parts.append(run(emb, lab))
    outs = [torch.cat(items) if len(parts) > 1 else items[0] for items in zip(*parts)]
    if labels is None:
        return PrototypeScores(class_sim=outs[0])
    return PrototypeScores(class_sim=outs[0], own_sim=outs[1], ppc_lse=outs[2])
