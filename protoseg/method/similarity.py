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


def class_scores(sim: Tensor, num_prototypes: int, *, with_index: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Eq. 6: ``[N, C*K] -> [N, C]``, a class's score is its closest prototype's similarity.

    ``with_index``: also the winning prototype within each class (``[N, C]``), for a hand-written
    backward; the values are the same.
    """
    per_class = sim.unflatten(-1, (-1, num_prototypes))
    if with_index:
        return torch.max(per_class, dim=-1)
    return per_class.amax(-1)


def nearest_prototype(sim: Tensor, num_prototypes: int) -> tuple[Tensor, Tensor]:
    """Eq. 5: winner-take-all over all C*K prototypes, ``(class [N], prototype-in-class [N])``."""
    best = sim.argmax(dim=-1)
    return best // num_prototypes, best % num_prototypes


@dataclass
class PrototypeScores:
    """What one pass over the pixel-prototype similarities yields."""

    class_sim: Tensor  # [N, C]: Eq. 6 scores (max over each class's K prototypes)
    own_sim: Tensor | None = None  # [N, K]: similarity to the K prototypes of the pixel's label
    ppc_lse: Tensor | None = None  # [N]: logsumexp over all C*K of sim / tau (Eq. 11 normaliser)
    ppc_temperature: float | None = None  # the tau of ppc_lse; Eq. 11's loss reads it from here


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
    if labels is not None and distance == "cosine":
        class_sim, own_sim, lse = _FusedCosineScores.apply(embeddings, flat, labels, num_classes, k,
                                                           ppc_temperature, chunk)
        return PrototypeScores(class_sim=class_sim, own_sim=own_sim, ppc_lse=lse, ppc_temperature=ppc_temperature)

    def run(emb: Tensor, lab: Tensor | None) -> tuple[Tensor, ...]:
        sim = similarity(emb, flat, distance, huber_delta)  # [n, C*K], computed once
        scores = class_scores(sim, k)
        if lab is None:
            return (scores,)
        own = sim.unflatten(1, (num_classes, k)).gather(1, lab.view(-1, 1, 1).expand(-1, 1, k)).squeeze(1)
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
    return PrototypeScores(class_sim=outs[0], own_sim=outs[1], ppc_lse=outs[2], ppc_temperature=ppc_temperature)


class _FusedCosineScores(torch.autograd.Function):
    """The training pass of ``prototype_scores`` for cosine similarity, fused by hand.

    Generic autograd through amax, gather and logsumexp makes several ``[N, C*K]`` temporaries and
    zero-filled gradients; here the forward turns each chunk of similarities into the PPC softmax in
    place, and the backward assembles one ``[n, C*K]`` gradient per chunk
    (``softmax * g_lse / tau``, plus the class-score and own-class gradients scattered in) and takes
    a single product with the prototypes. With one chunk the softmax is kept for backward; with
    several it is recomputed chunk by chunk, so memory stays bounded.
    """

    @staticmethod
    def forward(ctx, emb: Tensor, flat: Tensor, labels: Tensor, num_classes: int, k: int, tau: float,
                chunk: int):
        n = emb.shape[0]
        # the similarities' dtype: autocast's (CUDA autocast keeps F.normalize's output in float32 but
        # runs the product in fp16/bf16) or the embeddings'
        dtype = (emb[:0] @ flat.t()).dtype if torch.is_autocast_enabled(emb.device.type) else emb.dtype
        scores = emb.new_empty(n, num_classes, dtype=dtype)
        best = torch.empty(n, num_classes, dtype=torch.long, device=emb.device)
        own = emb.new_empty(n, k, dtype=dtype)
        lse = torch.empty(n, dtype=torch.float32, device=emb.device)
        keep = None
        for start in range(0, n, chunk):
            rows = slice(start, start + chunk)
            sim = emb[rows] @ flat.t()  # [m, C*K], the only similarity product of the forward
            scores[rows], best[rows] = class_scores(sim, k, with_index=True)
            own[rows] = sim.view(-1, num_classes, k).gather(1, labels[rows].view(-1, 1, 1).expand(-1, 1, k)).squeeze(1)
            soft, total = _softmax_(sim, tau)  # Eq. 11's normaliser, in place, float32
            lse[rows] = total.squeeze(1)
            if n <= chunk:
                keep = soft
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(emb, flat, labels, best, lse, *(() if keep is None else (keep,)))
        ctx.shape = (num_classes, k, tau, chunk)
        ctx.mark_non_differentiable(best)
        return scores, own, lse

    @staticmethod
    def backward(ctx, g_scores, g_own, g_lse):
        emb, flat, labels, best, lse, *kept = ctx.saved_tensors
        num_classes, k, tau, chunk = ctx.shape
        grad = torch.zeros_like(emb)
        for start in range(0, emb.shape[0], chunk):
            rows = slice(start, start + chunk)
            m = best[rows].shape[0]
            if g_lse is not None:
                if kept:
                    soft = kept[0]
                else:
                    soft = (emb[rows] @ flat.t()).float().div_(tau).sub_(lse[rows].unsqueeze(1)).exp_()
                g = soft * (g_lse[rows].float() / tau).unsqueeze(1)
            else:
                g = torch.zeros(m, num_classes * k, device=emb.device)
            per_class = g.view(m, num_classes, k)
            if g_scores is not None:
                per_class.scatter_add_(2, best[rows].unsqueeze(2), g_scores[rows].float().unsqueeze(2))
            if g_own is not None:
                idx = (torch.arange(m, device=emb.device), labels[rows])
                per_class.index_put_(idx, g_own[rows].float(), accumulate=True)
            grad[rows] = (g.to(emb.dtype) @ flat)
        return grad, None, None, None, None, None, None


def _softmax_(sim: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    """``softmax(sim / tau)`` over dim 1 and its log-normaliser, overwriting ``sim`` when float32."""
    x = sim.float() if sim.dtype != torch.float32 else sim
    x.mul_(1.0 / tau)
    peak = x.amax(dim=1, keepdim=True)
    x.sub_(peak).exp_()
    total = x.sum(dim=1, keepdim=True)
    x.div_(total)
    return x, peak + total.log()
