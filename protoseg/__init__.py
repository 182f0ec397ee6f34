"""ProtoSeg: a reference reproduction of "Rethinking Semantic Segmentation: A Prototype View".

Subpackages:
- ``protoseg.method``: the method as functions on tensors (Sinkhorn-Knopp, scores, losses, update).
- ``protoseg.heads``: ``nn.Module`` heads over it (nonparametric prototypes and parametric baselines).
"""

__version__ = "0.1.0"
