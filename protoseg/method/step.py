"""One training step of the nonparametric head, after the similarity pass: cluster, update, PPC, PPD.

``prototype_learning`` is the vectorised counterpart of the release's ``prototype_learning`` loop:
all classes are clustered at once (``sinkhorn_batched``), the update is one ``index_add``, and the
PPC/PPD losses reuse the similarities of the forward pass (no second ``[N, C*K]`` product).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from protoseg.config.method import MethodConfig
from .losses import ppc_loss, ppd_loss
from .similarity import PrototypeScores
from .sinkhorn import sinkhorn_batched
from .update import average_across_ranks, hard_assignment, momentum_update


@dataclass
class StepResult:
    prototypes: Tensor  # [C, K, D] updated prototypes
    target: Tensor  # [N] prototype index within the class: argmax of the plan (PPC/PPD target)
    assignment: Tensor  # [N] prototype index that fed the update (argmax, or the release's Gumbel draw)
    valid: Tensor  # [N] labelled pixels
    ppc: Tensor  # Eq. 11, mean over labelled pixels
    ppd: Tensor  # Eq. 12, mean over labelled pixels


def prototype_learning(scores: PrototypeScores, embeddings: Tensor, labels: Tensor, prototypes: Tensor,
                       config: MethodConfig, predictions: Tensor | None = None) -> StepResult:
    """Online clustering (Eqs. 8-10), prototype update (Eq. 14) and the PPC/PPD losses (Eqs. 11-12).

    Args:
        scores: output of ``prototype_scores(embeddings, prototypes, labels)``.
        embeddings: ``[N, D]``; labels: ``[N]``, any value outside ``[0, C)`` (the dataset's ignore
            value) for unlabelled pixels.
        predictions: ``[N]`` predicted classes; required when ``config.update_pixels == "correct"``.
    """
    num_classes, k, _ = prototypes.shape
    valid = (labels >= 0) & (labels < num_classes)
    classes = labels.clamp(0, num_classes - 1).long()
    target = torch.zeros_like(classes)
    assignment = torch.zeros_like(classes)
    global_sinkhorn = config.ddp_reduce == "sum"  # paper variant: cluster the global batch
    with torch.no_grad():
        if global_sinkhorn or bool(valid.any()):
            idx = valid.nonzero().squeeze(1)  # labelled pixels
            if config.update_assignment == "gumbel":
                # class-major order: the release draws its Gumbel noise class by class, in pixel order
                idx = idx[torch.argsort(classes[idx], stable=True)]
            vc = classes[idx]
            if k == 1:  # Table 5b's K = 1: the class mean, assigned by ground truth, no clustering
                plan = torch.ones(len(vc), 1, device=vc.device)
            else:
                plan = sinkhorn_batched(scores.own_sim.detach()[idx], vc, num_classes, config.sinkhorn_iters,
                                        config.sinkhorn_epsilon, distributed=global_sinkhorn)
            if len(vc):
                target[idx] = plan.argmax(dim=1)
                assignment[idx] = hard_assignment(plan, config.update_assignment, config.gumbel_tau)
        feed = valid
        if config.update_pixels == "correct":
            if predictions is None:
                raise ValueError("update_pixels='correct' needs the predicted classes (predictions=...)")
            feed = valid & (predictions == classes)
        new = momentum_update(prototypes, embeddings, classes, assignment, momentum=config.momentum,
                              mask=feed, normalize=config.normalized,
                              reduce_sums=config.ddp_reduce == "sum")
        if config.ddp_reduce == "mean":
            new = average_across_ranks(new)
    max_similarity = 1.0 if config.normalized else 0.0
    return StepResult(
        prototypes=new, target=target, assignment=assignment, valid=valid,
        ppc=ppc_loss(scores, target, valid),
        ppd=ppd_loss(scores.own_sim, target, valid, max_similarity),
    )
