"""Similarities, class scores, chunking, gradients, losses and low precision."""
import pytest
import torch
import torch.nn.functional as F

from protoseg.method import (class_scores, nearest_prototype, ppc_loss, ppd_loss, prototype_scores,
                             similarity)
from protoseg.method.losses import ce_loss


def _data(n=300, c=5, k=4, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(n, d, generator=g), dim=1)
    protos = F.normalize(torch.randn(c, k, d, generator=g), dim=-1)
    labels = torch.randint(0, c, (n,), generator=g)
    return emb, protos, labels


def test_class_scores_are_max_over_prototypes_and_prediction_is_nearest():
    emb, protos, _ = _data()
    sim = emb @ protos.flatten(0, 1).t()
    scores = class_scores(sim, 4)
    brute = torch.stack([torch.stack([(emb @ protos[c, k]) for k in range(4)], 1).max(1).values
                         for c in range(5)], 1)
    torch.testing.assert_close(scores, brute)
    cls, proto = nearest_prototype(sim, 4)
    flat = sim.argmax(1)
    assert torch.equal(cls * 4 + proto, flat)
    assert torch.equal(cls, scores.argmax(1))  # Eq. 5 and argmax of Eq. 6 agree


@pytest.mark.parametrize("distance", ["cosine", "euclidean", "huberized"])
def test_chunked_scores_equal_unchunked_values_and_gradients(distance):
    emb, protos, labels = _data()
    results = []
    for chunk in (1 << 30, 7 * 20):  # one chunk; 7 pixels per chunk (checkpointed)
        x = emb.clone().requires_grad_(True)
        s = prototype_scores(x, protos, labels, distance=distance, ppc_temperature=0.1,
                             max_chunk_elements=chunk)
        loss = s.class_sim.square().sum() + s.own_sim.sum() + s.ppc_lse.sum()
        loss.backward()
        results.append((s.class_sim.detach(), s.own_sim.detach(), s.ppc_lse.detach(), x.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_scores_outputs_match_definitions():
    emb, protos, labels = _data()
    s = prototype_scores(emb, protos, labels, ppc_temperature=0.1)
    sim = emb @ protos.flatten(0, 1).t()
    torch.testing.assert_close(s.own_sim, sim.view(-1, 5, 4)[torch.arange(300), labels])
    torch.testing.assert_close(s.ppc_lse, torch.logsumexp(sim / 0.1, dim=1))
    assert prototype_scores(emb, protos).own_sim is None  # inference: class scores only


def test_distances():
    x, p = torch.randn(6, 5), torch.randn(7, 5)
    torch.testing.assert_close(similarity(x, p, "euclidean"), -torch.cdist(x, p), atol=1e-4, rtol=1e-4)
    d = torch.cdist(x, p)
    torch.testing.assert_close(similarity(x, p, "huberized", 0.5), -((d**2 + 0.25).sqrt() - 0.5),
                               atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="distance='manhattan'"):
        similarity(x, p, "manhattan")


def test_ppc_equals_cross_entropy_over_all_prototypes():
    emb, protos, labels = _data()
    target = torch.randint(0, 4, (300,))
    valid = torch.rand(300) > 0.2
    s = prototype_scores(emb, protos, labels, ppc_temperature=0.1)
    sim = emb @ protos.flatten(0, 1).t()
    expected = F.cross_entropy(sim[valid] / 0.1, (labels * 4 + target)[valid])
    torch.testing.assert_close(ppc_loss(s, target, valid), expected)
    expected_ppd = (1 - sim[valid].gather(1, (labels * 4 + target)[valid, None])).pow(2).mean()
    torch.testing.assert_close(ppd_loss(s.own_sim, target, valid), expected_ppd)


def test_all_ignored_losses_are_zero_not_nan():
    emb, protos, labels = _data(n=10)
    s = prototype_scores(emb, protos, labels)
    none = torch.zeros(10, dtype=torch.bool)
    zero = torch.zeros(10, dtype=torch.long)
    assert ppc_loss(s, zero, none).item() == 0.0
    assert ppd_loss(s.own_sim, zero, none).item() == 0.0
    logits = torch.randn(1, 5, 4, 4, requires_grad=True)
    loss = ce_loss(logits, torch.full((1, 8, 8), 255))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_ce_upsamples_and_weights():
    logits = torch.randn(2, 3, 4, 4)
    labels = torch.randint(0, 3, (2, 8, 8))
    up = F.interpolate(logits, size=(8, 8), mode="bilinear", align_corners=False)
    w = torch.tensor([1.0, 2.0, 0.5])
    torch.testing.assert_close(ce_loss(logits, labels, weight=w), F.cross_entropy(up, labels, weight=w))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_scores_and_losses_have_no_nan(dtype):
    emb, protos, labels = _data(n=2000, c=50, k=10, d=32)
    emb = emb.to(dtype).requires_grad_(True)
    s = prototype_scores(emb, protos, labels, ppc_temperature=0.1)
    target = torch.zeros(2000, dtype=torch.long)
    valid = torch.ones(2000, dtype=torch.bool)
    loss = ppc_loss(s, target, valid) + ppd_loss(s.own_sim, target, valid)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(emb.grad.float()).all()
    assert s.ppc_lse.dtype == torch.float32


@pytest.mark.parametrize("dtype,chunk", [(torch.float32, 1 << 30), (torch.float32, 13 * 20),
                                         (torch.bfloat16, 1 << 30)])
@pytest.mark.parametrize("use", [("class", "own", "lse"), ("class", "lse")])
def test_fused_cosine_pass_matches_plain_autograd(dtype, chunk, use):
    emb, protos, labels = _data()
    g = torch.Generator().manual_seed(1)  # seeded: the global RNG's state depends on the tests run before
    weights = {name: torch.randn(shape, generator=g) for name, shape in
               (("class", (300, 5)), ("own", (300, 4)), ("lse", (300,)))}

    def loss_of(s):
        out = {"class": s[0], "own": s[1], "lse": s[2]}
        return sum((out[name].float() * weights[name]).sum() for name in use)

    x = emb.to(dtype).requires_grad_(True)
    fused = prototype_scores(x, protos, labels, ppc_temperature=0.1, max_chunk_elements=chunk)
    loss_of((fused.class_sim, fused.own_sim, fused.ppc_lse)).backward()

    y = emb.to(dtype).requires_grad_(True)
    sim = y @ protos.flatten(0, 1).t().to(dtype)
    per = sim.view(-1, 5, 4)
    # max (not amax): with bf16 ties, max routes the gradient to one prototype, as the fused pass does
    plain = (per.max(-1).values, per[torch.arange(300), labels], torch.logsumexp(sim.float() / 0.1, 1))
    loss_of(plain).backward()
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for a, b in zip((fused.class_sim, fused.own_sim, fused.ppc_lse), plain):
        torch.testing.assert_close(a.float(), b.float(), atol=tol, rtol=tol)
    torch.testing.assert_close(x.grad.float(), y.grad.float(), atol=tol, rtol=tol)
