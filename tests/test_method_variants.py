"""The paper/official variants: each of the seven differences, and the release bit-for-bit."""
import pytest
import torch
import torch.nn.functional as F

from protoseg.heads import PrototypeHead, segmentation_loss
from protoseg.method import (DIFFERENCES, OFFICIAL, PAPER, MethodConfig, prototype_learning,
                             prototype_scores)
from protoseg.reference import official as ref

C, K, D = 6, 4, 16


def _batch(seed=0, n=400):
    g = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(n, D, generator=g), dim=1)
    protos = F.normalize(torch.randn(C, K, D, generator=g), dim=-1)
    labels = torch.randint(0, C, (n,), generator=g)
    labels[:20] = 255
    return emb, protos, labels


def _step(cfg, emb, protos, labels, predictions=None, seed=0):
    scores = prototype_scores(emb, protos, labels, ppc_temperature=cfg.ppc_temperature)
    torch.manual_seed(seed)
    return prototype_learning(scores, emb, labels, protos, cfg, predictions=predictions)


def test_presets_and_difference_table():
    assert set(DIFFERENCES) == {"update_assignment", "update_pixels", "ppc_temperature", "ppd_weight",
                                "class_score_norm", "projection_norm", "ddp_reduce"}
    for name, (paper, official) in DIFFERENCES.items():
        assert getattr(PAPER, name) == paper and getattr(OFFICIAL, name) == official and paper != official
    assert MethodConfig.for_variant("paper", update_assignment="gumbel").update_assignment == "gumbel"


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="unknown MethodConfig key.*'tau'.*valid keys"):
        MethodConfig.for_variant("paper", tau=0.1)
    with pytest.raises(ValueError, match="distance='l1'.*cosine"):
        MethodConfig(distance="l1")
    with pytest.raises(ValueError, match="momentum=1.5"):
        MethodConfig(momentum=1.5)
    with pytest.raises(ValueError, match="variant='authors'"):
        MethodConfig.for_variant("authors")


def test_paper_step_equals_per_class_loop_reference():
    emb, protos, labels = _batch()
    res = _step(PAPER, emb, protos, labels)
    expected = protos.clone()
    for c in range(C):
        rows = labels == c
        if not rows.any():
            continue
        plan = _direct_sinkhorn(emb[rows] @ protos[c].t())
        assign = plan.argmax(1)
        assert torch.equal(res.target[rows], assign)
        for k in range(K):
            sel = assign == k
            if sel.any():
                mean = F.normalize(emb[rows][sel].mean(0), dim=0)
                expected[c, k] = F.normalize(0.999 * protos[c, k] + 0.001 * mean, dim=0)
    torch.testing.assert_close(res.prototypes, expected)


def _direct_sinkhorn(scores, iters=3, eps=0.05):
    q = torch.exp(scores.double() / eps).t()
    q /= q.sum()
    for _ in range(iters):
        q /= q.sum(1, keepdim=True) * q.shape[0]
        q /= q.sum(0, keepdim=True) * q.shape[1]
    return (q * q.shape[1]).t()


def test_update_assignment_switch():
    emb, protos, labels = _batch(1)
    arg = _step(PAPER, emb, protos, labels)
    assert torch.equal(arg.assignment, arg.target)
    gum = _step(MethodConfig.for_variant("paper", update_assignment="gumbel"), emb, protos, labels)
    valid = gum.valid
    assert torch.equal(gum.target, arg.target)  # the PPC target stays the plan's argmax
    assert (gum.assignment[valid] != gum.target[valid]).float().mean() > 0.3
    assert not torch.allclose(gum.prototypes, arg.prototypes)


def test_update_pixels_switch():
    emb, protos, labels = _batch(2)
    predictions = labels.clone()
    wrong = torch.arange(len(labels)) % 2 == 0
    predictions[wrong] = (labels[wrong] + 1) % C
    cfg = MethodConfig.for_variant("paper", update_pixels="correct")
    res = _step(cfg, emb, protos, labels, predictions)
    from protoseg.method import momentum_update
    expected = momentum_update(protos, emb, labels.clamp(0, C - 1), res.assignment, momentum=0.999,
                               mask=res.valid & ~wrong)
    torch.testing.assert_close(res.prototypes, expected)
    assert not torch.allclose(_step(PAPER, emb, protos, labels, predictions).prototypes, res.prototypes)
    with pytest.raises(ValueError, match="predictions"):
        _step(cfg, emb, protos, labels, None)


@pytest.mark.parametrize("tau", [0.1, 1.0])
def test_ppc_temperature_switch(tau):
    emb, protos, labels = _batch(3)
    res = _step(MethodConfig.for_variant("paper", ppc_temperature=tau), emb, protos, labels)
    sim = emb @ protos.flatten(0, 1).t()
    v = res.valid
    expected = F.cross_entropy(sim[v] / tau, labels[v] * K + res.target[v])
    torch.testing.assert_close(res.ppc, expected)


def test_ppd_weight_switch_enters_the_total():
    for variant, weight in (("paper", 0.01), ("official", 0.001)):
        head = PrototypeHead(D, C, K, config=MethodConfig.for_variant(variant)).train()
        labels = torch.randint(0, C, (2, 8, 8))
        out = head(torch.randn(2, D, 4, 4), labels)
        terms = segmentation_loss(out, labels)
        assert {n: t.weight for n, t in out.losses.items()} == {"ppc": head.config.ppc_weight, "ppd": weight}
        expected = terms["ce"] + head.config.ppc_weight * terms["ppc"] + weight * terms["ppd"]
        torch.testing.assert_close(terms["total"], expected)


@pytest.mark.parametrize("mode", ["none", "layernorm", "temperature"])
def test_class_score_norm_switch(mode):
    head = PrototypeHead(D, C, K, config=MethodConfig.for_variant("paper", class_score_norm=mode)).eval()
    if head.score_norm is not None:
        with torch.no_grad():
            head.score_norm.weight.uniform_(0.5, 2)
            head.score_norm.bias.uniform_(-1, 1)
    feats = torch.randn(1, D, 3, 3)
    raw = head.embed(feats) @ head.prototypes.flatten(0, 1).t()
    cos = raw.view(-1, C, K).amax(-1)
    expected = {"none": cos, "temperature": cos / 0.1,
                "layernorm": F.layer_norm(cos, (C,), head.score_norm.weight, head.score_norm.bias)
                if head.score_norm is not None else None}[mode]
    got = head(feats).logits.permute(0, 2, 3, 1).reshape(-1, C)
    torch.testing.assert_close(got, expected)
    assert sum(p.numel() for p in head.parameters()) == (2 * C if mode == "layernorm" else 0)


def test_projection_norm_switch_normalises_over_width():
    feats = torch.randn(2, D, 3, 5)
    chan = PrototypeHead(D, C, config=MethodConfig.for_variant("paper")).embed(feats)
    width = PrototypeHead(D, C, config=MethodConfig.for_variant("paper", projection_norm="width")).embed(feats)
    expected = F.normalize(F.normalize(feats, dim=3).permute(0, 2, 3, 1).reshape(-1, D), dim=1)
    torch.testing.assert_close(width, expected)
    torch.testing.assert_close(chan, F.normalize(feats.permute(0, 2, 3, 1).reshape(-1, D), dim=1))
    assert not torch.allclose(chan, width)


def _official_reference_step(head, feats, labels):
    """The release's forward + prototype_learning + loss with the head's own weights."""
    b, _, h, w = feats.shape
    c = F.normalize(head.projection(feats), dim=-1)
    _c = ref.l2_normalize(head.feature_norm(c.permute(0, 2, 3, 1).reshape(-1, D)))
    protos = ref.l2_normalize(head.prototypes)
    out_seg, masks = ref.head_forward(_c, protos, head.score_norm, b, h, w)
    gt = labels.clone()
    gt[gt == 255] = -1
    gt_seg = F.interpolate(gt.unsqueeze(1).float(), size=(h, w), mode="nearest").view(-1)
    logits, target, new = ref.prototype_learning(_c, out_seg, gt_seg, masks, protos, C, K)
    seg, ppc, ppd = ref.losses(out_seg, gt, logits, target)
    return out_seg, new, seg + 0.01 * ppc + 0.001 * ppd


def test_official_variant_matches_the_release_bit_for_bit_over_steps():
    torch.manual_seed(0)
    head = PrototypeHead(D, C, K, config=MethodConfig.for_variant("official")).train()
    with torch.no_grad():
        for p in head.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    twin = PrototypeHead(D, C, K, config=MethodConfig.for_variant("official")).train()
    twin.load_state_dict(head.state_dict())
    for step in range(3):
        feats = torch.randn(2, D, 8, 8) + step
        labels = torch.randint(0, C, (2, 16, 16))
        labels[:, :4] = 255
        torch.manual_seed(100 + step)  # the release draws Gumbel noise class by class: same stream
        out_seg, new_protos, loss = _official_reference_step(twin, feats, labels)
        torch.manual_seed(100 + step)
        out = head(feats, labels)
        terms = segmentation_loss(out, labels, align_corners=True)
        assert torch.equal(out.logits, out_seg)
        assert torch.equal(head.prototypes, new_protos)
        torch.testing.assert_close(terms["total"], loss, rtol=1e-6, atol=1e-6)
        with torch.no_grad():
            twin.prototypes.copy_(new_protos)


def test_prototypes_are_a_buffer_without_gradient():
    head = PrototypeHead(D, C, K, config=MethodConfig.for_variant("paper")).train()
    assert "prototypes" in head.state_dict()
    assert all(p is not head.prototypes for p in head.parameters())
    feats = torch.randn(2, D, 4, 4, requires_grad=True)
    labels = torch.randint(0, C, (2, 8, 8))
    before = head.prototypes.clone()
    segmentation_loss(head(feats, labels), labels)["total"].backward()
    assert feats.grad is not None and feats.grad.abs().sum() > 0
    assert head.prototypes.grad is None and not head.prototypes.requires_grad
    assert not torch.equal(head.prototypes, before)  # moved by Eq. 14, not by SGD
    head.eval()
    kept = head.prototypes.clone()
    head(feats.detach(), labels)  # no update outside training
    assert torch.equal(head.prototypes, kept)


def test_k1_is_the_class_mean_without_clustering():
    emb, protos, labels = _batch(4)
    cfg = MethodConfig.for_variant("paper", momentum=0.0)
    res = _step(cfg, emb, protos[:, :1], labels)
    for c in range(C):
        torch.testing.assert_close(res.prototypes[c, 0], F.normalize(emb[labels == c].mean(0), dim=0))


def test_every_pixel_ignored_changes_nothing_and_gives_zero_losses():
    emb, protos, _ = _batch(5)
    labels = torch.full((len(emb),), 255)
    res = _step(PAPER, emb, protos, labels)
    torch.testing.assert_close(res.prototypes, protos)
    assert res.ppc.item() == 0.0 and res.ppd.item() == 0.0


def test_gumbel_update_collapses_prototypes_argmax_keeps_them_apart():
    """The spec's toy: one class with 10 well separated sub-clusters (official 0.81 vs argmax -0.04)."""
    g = torch.Generator().manual_seed(0)
    d, k = 32, 10
    centres = F.normalize(torch.randn(k, d, generator=g), dim=1)
    results = {}
    for mode in ("argmax", "gumbel"):
        torch.manual_seed(0)
        protos = F.normalize(torch.randn(1, k, d, generator=torch.Generator().manual_seed(1)), dim=-1)
        cfg = MethodConfig.for_variant("paper", update_assignment=mode, momentum=0.9)
        for _ in range(150):
            which = torch.randint(0, k, (500,), generator=g)
            emb = F.normalize(centres[which] + 0.05 * torch.randn(500, d, generator=g), dim=1)
            labels = torch.zeros(500, dtype=torch.long)
            protos = _step(cfg, emb, protos, labels).prototypes
        p = protos[0]
        sim = p @ p.t()
        results[mode] = ((sim.sum() - k) / (k * (k - 1))).item()
    assert results["argmax"] < 0.2 < 0.5 < results["gumbel"], results
