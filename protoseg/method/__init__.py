"""The ProtoSeg method as functions on tensors, usable without any network.

Public names (equation numbers are the paper's):
- ``MethodConfig``, ``PAPER``, ``OFFICIAL``, ``DIFFERENCES``: hyper-parameters, the two variants and
  the seven switches that separate them.
- ``sinkhorn`` (Eqs. 9-10, one class) and ``sinkhorn_batched`` (all classes of a batch at once).
- ``similarity`` (cosine / Euclidean / Huberized, Table 5d), ``class_scores`` (Eq. 6),
  ``nearest_prototype`` (Eq. 5), ``prototype_scores`` (one chunked pass yielding the class scores,
  the Sinkhorn input and the PPC normaliser) and ``PrototypeScores``.
- ``ce_loss`` (Eq. 7), ``ppc_loss`` (Eq. 11), ``ppd_loss`` (Eq. 12), ``total_loss`` (Eq. 13) over
  ``LossTerm``s (value, weight, pixels).
- ``hard_assignment`` (argmax or the release's Gumbel draw), ``momentum_update`` (Eq. 14),
  ``average_across_ranks`` (the release's DDP reduction).
- ``prototype_learning`` and ``StepResult``: clustering, update and PPC/PPD for one batch.
"""
from protoseg.config.method import DIFFERENCES, OFFICIAL, PAPER, MethodConfig
from .losses import LossTerm, ce_loss, ppc_loss, ppd_loss, total_loss
from .similarity import PrototypeScores, class_scores, nearest_prototype, prototype_scores, similarity
from .sinkhorn import segment_logsumexp, sinkhorn, sinkhorn_batched
from .step import StepResult, prototype_learning
from .update import average_across_ranks, hard_assignment, momentum_update

__all__ = [
    "DIFFERENCES", "LossTerm", "OFFICIAL", "PAPER", "MethodConfig", "PrototypeScores", "StepResult",
    "average_across_ranks", "ce_loss", "class_scores", "hard_assignment", "momentum_update",
    "nearest_prototype", "ppc_loss", "ppd_loss", "prototype_learning", "prototype_scores",
    "segment_logsumexp", "similarity", "sinkhorn", "sinkhorn_batched", "total_loss",
]
