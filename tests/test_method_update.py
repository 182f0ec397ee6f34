"""Momentum update (Eq. 14) and hard assignments."""
import pytest
import torch
import torch.nn.functional as F

from protoseg.method import hard_assignment, momentum_update


def _setup(seed=0, c=3, k=4, d=8, n=60):
    g = torch.Generator().manual_seed(seed)
    protos = F.normalize(torch.randn(c, k, d, generator=g), dim=-1)
    emb = F.normalize(torch.randn(n, d, generator=g), dim=-1)
    labels = torch.randint(0, c, (n,), generator=g)
    assign = torch.randint(0, k, (n,), generator=g)
    return protos, emb, labels, assign


def test_only_assigned_prototypes_move_and_match_formula():
    protos, emb, labels, assign = _setup()
    assign[labels == 1] = 2  # class 1: only prototype 2 receives pixels
    new = momentum_update(protos, emb, labels, assign, momentum=0.9)
    for c in range(3):
        for k in range(4):
            sel = (labels == c) & (assign == k)
            if sel.any():
                mean_l2 = F.normalize(emb[sel].mean(0), dim=0)
                expected = F.normalize(0.9 * protos[c, k] + 0.1 * mean_l2, dim=0)
                torch.testing.assert_close(new[c, k], expected)
            else:
                torch.testing.assert_close(new[c, k], protos[c, k])
    torch.testing.assert_close(new[1, [0, 1, 3]], protos[1, [0, 1, 3]])
    torch.testing.assert_close(new.norm(dim=-1), torch.ones(3, 4))  # re-normalised


def test_momentum_one_keeps_and_zero_replaces():
    protos, emb, labels, assign = _setup(1)
    torch.testing.assert_close(momentum_update(protos, emb, labels, assign, momentum=1.0), protos)
    new = momentum_update(protos, emb, labels, assign, momentum=0.0)
    sel = (labels == 0) & (assign == 0)
    assert sel.any()
    torch.testing.assert_close(new[0, 0], F.normalize(emb[sel].sum(0), dim=0))


def test_mask_excludes_pixels():
    protos, emb, labels, assign = _setup(2)
    mask = torch.zeros_like(labels, dtype=torch.bool)
    torch.testing.assert_close(momentum_update(protos, emb, labels, assign, momentum=0.5, mask=mask), protos)


def test_unnormalised_update_uses_plain_means():
    protos, emb, labels, assign = _setup(3)
    emb = emb * 5
    new = momentum_update(protos, emb, labels, assign, momentum=0.5, normalize=False)
    sel = (labels == 2) & (assign == 1)
    torch.testing.assert_close(new[2, 1], 0.5 * protos[2, 1] + 0.5 * emb[sel].mean(0))


def test_embeddings_are_detached():
    protos, emb, labels, assign = _setup(4)
    emb.requires_grad_(True)
    assert not momentum_update(protos, emb, labels, assign, momentum=0.5).requires_grad


def test_argmax_and_gumbel_assignment():
    torch.manual_seed(0)
    plan = torch.softmax(torch.randn(20000, 10) * 3, dim=1)
    arg = hard_assignment(plan, "argmax")
    assert torch.equal(arg, plan.argmax(1))
    gum = hard_assignment(plan, "gumbel", tau=0.5)
    agree = (gum == arg).float().mean().item()
    # the release treats probabilities as logits: its sample rarely agrees with the argmax
    assert 0.1 < agree < 0.5
    # and it is exactly torch's gumbel_softmax(hard=True) draw
    torch.manual_seed(5)
    a = hard_assignment(plan, "gumbel")
    torch.manual_seed(5)
    assert torch.equal(a, F.gumbel_softmax(plan, tau=0.5, hard=True).argmax(1))
    with pytest.raises(ValueError, match="update_assignment"):
        hard_assignment(plan, "mode")
