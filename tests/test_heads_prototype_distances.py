"""Training step of the prototype head with every distance (Table 5d): the in-place prototype update
must not break the backward pass (euclidean/huberized keep the raw prototypes in the graph)."""
from __future__ import annotations

import pytest
import torch

from protoseg.heads import PrototypeHead
from protoseg.method import MethodConfig


@pytest.mark.parametrize("distance", ["cosine", "euclidean", "huberized"])
def test_train_step_backward_with_each_distance(distance):
    torch.manual_seed(0)
    head = PrototypeHead(8, 3, 2, config=MethodConfig.for_variant("paper", distance=distance,
                                                       momentum=0.5)).train()
    feats = torch.randn(2, 8, 4, 4, requires_grad=True)
    labels = torch.randint(0, 3, (2, 4, 4))
    before = head.prototypes.clone()
    out = head(feats, labels)
    loss = torch.nn.functional.cross_entropy(out.logits, labels) + out.losses["ppc"].value + out.losses["ppd"].value
    loss.backward()
    assert feats.grad is not None and torch.isfinite(feats.grad).all()
    assert not torch.equal(before, head.prototypes)  # the update happened
