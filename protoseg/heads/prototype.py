"""The nonparametric head: K non-learnable prototypes per class (Section 3 of the paper).

Prototypes are a buffer: no optimizer sees them, the state dict saves them, and they move only by
the momentum update of Eq. 14 after online clustering. With ``MethodConfig.for_variant("official")``
the head also carries the release's tail: projection head (normalised over image width, the
release's bug), LayerNorm on features and LayerNorm on class scores.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from protoseg.method import MethodConfig, nearest_prototype, prototype_learning, prototype_scores, similarity
from protoseg.method.losses import LossTerm

from .output import HeadOutput


class ProjectionHead(nn.Module):
    """The release's ``proj_head``: 1x1 conv, ReLU, 1x1 conv (D -> D)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class PrototypeHead(nn.Module):
    """Nearest-prototype segmentation head (Eqs. 5-14)."""

    prototypes: Tensor

    def __init__(self, in_channels: int, num_classes: int, num_prototypes: int = 10, *,
                 config: MethodConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or MethodConfig()
        self.num_classes, self.num_prototypes = num_classes, num_prototypes
        self.projection = ProjectionHead(in_channels) if config.projection else None
        self.feature_norm = nn.LayerNorm(in_channels) if config.feature_layernorm else None
        self.score_norm = nn.LayerNorm(num_classes) if config.class_score_norm == "layernorm" else None
        protos = nn.init.trunc_normal_(torch.empty(num_classes, num_prototypes, in_channels), std=0.02)
        if config.normalized:
            protos = F.normalize(protos, dim=-1)
        self.register_buffer("prototypes", protos)

    def embed(self, features: Tensor) -> Tensor:
        """``[B, D, h, w]`` decoder features -> ``[B*h*w, D]`` pixel embeddings."""
        x = self.projection(features) if self.projection is not None else features
        if self.config.projection_norm == "width":
            x = F.normalize(x, dim=-1)  # the release's F.normalize(dim=-1) on NCHW: over image WIDTH
        x = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
        if self.feature_norm is not None:
            x = self.feature_norm(x)
        if self.config.normalized:
            x = F.normalize(x, dim=1)  # l2 over channels (Eq. 5)
        return x

    def scale_scores(self, class_sim: Tensor) -> Tensor:
        """The class-score switch: Eq. 6 as is, the release's LayerNorm(C), or a fixed temperature."""
        if self.score_norm is not None:
            return self.score_norm(class_sim)
        if self.config.class_score_norm == "temperature":
            return class_sim / self.config.class_score_temperature
        return class_sim

    def current_prototypes(self) -> Tensor:
        # the release re-normalises every forward; needed after its averaging DDP reduction
        # un-normalised distances: a copy, because the autograd graph of the similarities keeps the
        # prototypes and the training forward updates the buffer in place afterwards
        return F.normalize(self.prototypes, dim=-1) if self.config.normalized else self.prototypes.clone()

    def forward(self, features: Tensor, labels: Tensor | None = None) -> HeadOutput:
        """Inference: class scores ``[B, C, h, w]``. Training with labels ``[B, H, W]``: also clusters,
        updates the prototypes (after the similarities are taken) and returns PPC/PPD."""
        cfg = self.config
        b, _, h, w = features.shape
        emb = self.embed(features)
        protos = self.current_prototypes()
        learn = self.training and labels is not None
        flat_labels = None
        if learn:
            # labels to feature resolution by nearest neighbour, as the release does
            small = F.interpolate(labels.unsqueeze(1).float(), size=(h, w), mode="nearest")
            flat_labels = small.view(-1).long()
        scores = prototype_scores(emb, protos, flat_labels, distance=cfg.distance,
                                  ppc_temperature=cfg.ppc_temperature, huber_delta=cfg.huber_delta,
                                  max_chunk_elements=cfg.max_chunk_elements)
        logits_flat = self.scale_scores(scores.class_sim)
        # contiguous NCHW: channels-last strides would make the upsampled [B, C, H, W] copy in the CE
        logits = logits_flat.view(b, h, w, self.num_classes).permute(0, 3, 1, 2).contiguous()
        out = HeadOutput(logits=logits, embeddings=emb.view(b, h, w, -1).permute(0, 3, 1, 2))
        if learn:
            step = prototype_learning(scores, emb, flat_labels, protos, cfg,
                                      predictions=logits_flat.detach().argmax(dim=1))
            with torch.no_grad():
                self.prototypes.copy_(step.prototypes)
            labelled = step.valid.sum()
            out.losses = {"ppc": LossTerm(step.ppc, cfg.ppc_weight, labelled),
                          "ppd": LossTerm(step.ppd, cfg.ppd_weight, labelled)}
            out.proto_target = step.target.view(b, h, w)
        return out

    @torch.no_grad()
    def nearest(self, features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Each pixel's nearest prototype (``nearest_prototype``, Eq. 5): ``(class, prototype within
        class, similarity)``, each ``[B, h, w]`` (the paper's Fig. 3 colours pixels by it)."""
        b, _, h, w = features.shape
        sim = similarity(self.embed(features), self.current_prototypes().flatten(0, 1),
                         self.config.distance, self.config.huber_delta)
        cls, proto = nearest_prototype(sim, self.num_prototypes)
        best = sim.amax(dim=1)
        return cls.view(b, h, w), proto.view(b, h, w), best.view(b, h, w)
