"""The parametric baselines share the prototype head's interface."""
import pytest
import torch
import torch.nn.functional as F

from protoseg.heads import LearnablePrototypeHead, PixelQueryHead, PrototypeHead, SoftmaxHead, segmentation_loss
from protoseg.method import MethodConfig

D, C = 24, 7


def _count(m):
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


@pytest.mark.parametrize("head,params", [
    (SoftmaxHead(D, C), D * C + C),
    (PixelQueryHead(D, C), D * C),
    (LearnablePrototypeHead(D, C, 10), D * C * 10),
    (PrototypeHead(D, C, config=MethodConfig.for_variant("paper")), 0),
    (PrototypeHead(D, C, config=MethodConfig.for_variant("official")), 2 * (D * D + D) + 2 * D + 2 * C),
])
def test_interface_shapes_params_and_gradients(head, params):
    assert _count(head) == params
    feats = torch.randn(2, D, 5, 6, requires_grad=True)
    labels = torch.randint(0, C, (2, 20, 24))
    out = head.train()(feats, labels)
    assert out.logits.shape == (2, C, 5, 6)
    segmentation_loss(out, labels)["total"].backward()
    assert feats.grad.abs().sum() > 0


def test_parametric_scores_follow_their_equations():
    feats = torch.randn(1, D, 2, 3)
    x = feats.permute(0, 2, 3, 1).reshape(-1, D)
    sm = SoftmaxHead(D, C)
    expected = x @ sm.classifier.weight.view(C, D).t() + sm.classifier.bias  # Eq. 1
    torch.testing.assert_close(sm(feats).logits.permute(0, 2, 3, 1).reshape(-1, C), expected)
    pq = PixelQueryHead(D, C, temperature=0.5)
    expected = F.normalize(x, dim=1) @ F.normalize(pq.queries, dim=1).t() / 0.5  # Eq. 2, cosine
    torch.testing.assert_close(pq(feats).logits.permute(0, 2, 3, 1).reshape(-1, C), expected)
    lp = LearnablePrototypeHead(D, C, 3)
    expected = (x @ lp.prototypes.flatten(0, 1).t()).view(-1, C, 3).amax(-1)
    torch.testing.assert_close(lp(feats).logits.permute(0, 2, 3, 1).reshape(-1, C), expected)


def test_nearest_prototype_map():
    head = PrototypeHead(D, C, 3, config=MethodConfig.for_variant("paper")).eval()
    feats = torch.randn(2, D, 4, 4)
    cls, proto, sim = head.nearest(feats)
    assert torch.equal(cls, head(feats).logits.argmax(1))
    assert proto.max() < 3 and sim.shape == (2, 4, 4) and (sim <= 1 + 1e-6).all()


def test_learnable_prototypes_match_the_einsum_formulation_bit_for_bit():
    """The [N, C*K] product with a max over contiguous K gives the values and gradients of
    ``einsum('bdhw,ckd->bckhw').amax(2)``, bit for bit."""
    torch.manual_seed(0)
    lp = LearnablePrototypeHead(D, C, 4)
    feats = torch.randn(2, D, 5, 3, requires_grad=True)
    g = torch.randn(2, C, 5, 3)
    out = lp(feats).logits
    assert out.is_contiguous()
    got = (out, *torch.autograd.grad(out, (feats, lp.prototypes), g))
    ref = torch.einsum("bdhw,ckd->bckhw", feats, lp.prototypes).amax(dim=2)
    expected = (ref, *torch.autograd.grad(ref, (feats, lp.prototypes), g))
    for a, b in zip(got, expected):
        assert torch.equal(a, b)
