"""Sinkhorn-Knopp (Eqs. 9-10): marginals, edge cases, batching, low precision."""

import pytest
import torch

from protoseg.method import segment_logsumexp, sinkhorn, sinkhorn_batched
from protoseg.method.sinkhorn import _sinkhorn_direct, _sinkhorn_log


def reference_sinkhorn(scores: torch.Tensor, iters: int = 3, epsilon: float = 0.05) -> torch.Tensor:
    """The release's direct form, per class, in float64 (independent of our log-domain code)."""
    q = torch.exp(scores.double() / epsilon).t()
    k, n = q.shape
    q /= q.sum()
    for _ in range(iters):
        q /= q.sum(dim=1, keepdim=True)
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= n
    return (q * n).t()


def test_rows_sum_to_one_and_match_reference():
    torch.manual_seed(0)
    scores = torch.rand(500, 10) * 2 - 1
    plan = sinkhorn(scores)
    assert plan.dtype == torch.float32 and plan.shape == (500, 10)
    torch.testing.assert_close(plan.sum(1), torch.ones(500), atol=1e-5, rtol=0)
    torch.testing.assert_close(plan.double(), reference_sinkhorn(scores), atol=1e-5, rtol=1e-4)


def test_equipartition_improves_with_iterations():
    torch.manual_seed(1)
    # all pixels prefer prototype 0: a plain softmax would put almost all mass there
    scores = torch.randn(400, 5) * 0.1
    scores[:, 0] += 0.5
    softmax_share = torch.softmax(scores / 0.05, dim=1).sum(0) / 400
    assert softmax_share[0] > 0.9
    plan = sinkhorn(scores, iters=50)
    torch.testing.assert_close(plan.sum(0), torch.full((5,), 400 / 5), rtol=1e-3, atol=0)
    # the default 3 iterations already spread the hard assignments over every prototype
    counts = torch.bincount(sinkhorn(scores).argmax(1), minlength=5)
    assert (counts > 0).all()


@pytest.mark.parametrize("n", [1, 3])
def test_one_pixel_and_fewer_pixels_than_prototypes(n):
    scores = torch.rand(n, 10)
    plan = sinkhorn(scores)
    assert torch.isfinite(plan).all()
    torch.testing.assert_close(plan.sum(1), torch.ones(n))
    torch.testing.assert_close(plan.double(), reference_sinkhorn(scores), atol=1e-6, rtol=1e-5)


def test_empty_input():
    assert sinkhorn(torch.zeros(0, 10)).shape == (0, 10)
    out = sinkhorn_batched(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), num_classes=3)
    assert out.shape == (0, 4)


def test_batched_equals_per_class_reference_with_absent_classes():
    torch.manual_seed(2)
    num_classes, k = 7, 6
    sizes = {0: 300, 2: 1, 3: 4, 5: 57, 6: 1000}  # classes 1 and 4 absent; 1 and 4 pixels; uneven
    labels = torch.cat([torch.full((s,), c) for c, s in sizes.items()])
    labels = labels[torch.randperm(len(labels))]  # classes interleaved, not sorted
    scores = torch.rand(len(labels), k) * 2 - 1
    plan = sinkhorn_batched(scores, labels, num_classes)
    for c in sizes:
        rows = labels == c
        torch.testing.assert_close(plan[rows].double(), reference_sinkhorn(scores[rows]), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_and_extreme_inputs_give_no_nan(dtype):
    torch.manual_seed(3)
    scores = (torch.rand(256, 10) * 2 - 1).to(dtype)
    scores[:10] = 1.0  # extreme cosines: exp(1 / 0.05) overflows fp16 in the direct form
    scores[10:20] = -1.0
    plan = sinkhorn(scores)
    assert torch.isfinite(plan).all()
    torch.testing.assert_close(plan.sum(1), torch.ones(256), atol=1e-5, rtol=0)
    # un-normalised (Euclidean) similarities, far outside [-1, 1], overflow even float32 directly
    big = -torch.rand(64, 10) * 300
    assert torch.isfinite(sinkhorn(big)).all()
    assert not torch.isfinite(torch.exp(-big / 0.05)).all()


def test_segment_logsumexp_matches_loop():
    torch.manual_seed(4)
    values, seg = torch.randn(50, 3), torch.randint(0, 5, (50,))
    seg[seg == 2] = 3  # segment 2 empty
    out = segment_logsumexp(values, seg, 5)
    for s in range(5):
        if (seg == s).any():
            torch.testing.assert_close(out[s], torch.logsumexp(values[seg == s], 0))
        else:
            assert torch.isneginf(out[s]).all()


def test_rejects_zero_iterations():
    with pytest.raises(ValueError, match="iters=0"):
        sinkhorn(torch.rand(4, 2), iters=0)



def test_direct_and_log_domain_paths_agree_and_fallback_is_taken():
    torch.manual_seed(5)
    labels = torch.randint(0, 4, (300,))
    logits = (torch.rand(300, 6) * 2 - 1) / 0.05
    pixels = torch.bincount(labels, minlength=4).float()[labels].unsqueeze(1)
    direct = _sinkhorn_direct(logits, labels, 4, pixels, 3, False)
    torch.testing.assert_close(direct, _sinkhorn_log(logits, labels, 4, pixels, 3, False), atol=1e-5, rtol=1e-4)
    far = -torch.rand(300, 6) * 300 / 0.05  # un-normalised distances: exp underflows
    assert _sinkhorn_direct(far, labels, 4, pixels, 3, False) is None
    plan = sinkhorn_batched(far * 0.05, labels, 4)
    torch.testing.assert_close(plan, _sinkhorn_log(far, labels, 4, pixels, 3, False))
