"""A line-by-line transcription of the official ProtoSeg release's prototype code (tfzhou/ProtoSeg
@1c4a7784: ``distributed_sinkhorn``, ``momentum_update``, the tail of ``HRNet_W48_Proto.forward``,
``prototype_learning`` and ``PixelPrototypeCELoss``), as ../shared/spec/method.md describes it.

Not used for training. It exists so that tests can check ``variant="official"`` against the
release's own structure, and so that ``benchmarks/bench_prototype_step.py`` can time that structure
(a Python loop over classes plus a second ``[N, C*K]`` matrix product). The release's ignore label
is -1 (its loader maps 255 to -1).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def l2_normalize(x: Tensor) -> Tensor:
    return F.normalize(x, p=2, dim=-1)


def distributed_sinkhorn(out: Tensor, sinkhorn_iterations: int = 3, epsilon: float = 0.05):
    L = torch.exp(out / epsilon).t()  # K x B
    B = L.shape[1]
    K = L.shape[0]
    sum_L = torch.sum(L)
    L /= sum_L
    for _ in range(sinkhorn_iterations):
        L /= torch.sum(L, dim=1, keepdim=True)
        L /= K
        L /= torch.sum(L, dim=0, keepdim=True)
        L /= B
    L *= B
    L = L.t()
    indexs = torch.argmax(L, dim=1)
    L = F.gumbel_softmax(L, tau=0.5, hard=True)
    return L, indexs


def momentum_update(old_value: Tensor, new_value: Tensor, momentum: float) -> Tensor:
    return momentum * old_value + (1 - momentum) * new_value


def head_forward(_c: Tensor, prototypes: Tensor, mask_norm, b: int, h: int, w: int):
    """From normalised pixel features ``_c [N, D]`` to class scores; returns (out_seg, masks)."""
    masks = torch.einsum("nd,kmd->nmk", _c, prototypes)
    out_seg = torch.amax(masks, dim=1)
    out_seg = mask_norm(out_seg)
    out_seg = out_seg.view(b, h, w, -1).permute(0, 3, 1, 2)  # "(b h w) k -> b k h w"
    return out_seg, masks


def prototype_learning(_c: Tensor, out_seg: Tensor, gt_seg: Tensor, masks: Tensor, prototypes: Tensor,
                       num_classes: int, num_prototype: int, gamma: float = 0.999):
    """Returns ``(proto_logits [N, C*K], proto_target [N], new_prototypes [C, K, D])``."""
    pred_seg = torch.max(out_seg, 1)[1]
    mask = gt_seg == pred_seg.view(-1)
    cosine_similarity = torch.mm(_c, prototypes.view(-1, prototypes.shape[-1]).t())
    proto_logits = cosine_similarity
    proto_target = gt_seg.clone().float()
    protos = prototypes.data.clone()
    for k in range(num_classes):
        init_q = masks[..., k]
        init_q = init_q[gt_seg == k, ...]
        if init_q.shape[0] == 0:
            continue
        q, indexs = distributed_sinkhorn(init_q)
        m_k = mask[gt_seg == k]
        c_k = _c[gt_seg == k, ...]
        m_k_tile = m_k.unsqueeze(1).repeat(1, num_prototype)
        m_q = q * m_k_tile
        c_k_tile = m_k.unsqueeze(1).repeat(1, c_k.shape[-1])
        c_q = c_k * c_k_tile
        f = m_q.transpose(0, 1) @ c_q
        n = torch.sum(m_q, dim=0)
        if torch.sum(n) > 0:
            f = F.normalize(f, p=2, dim=-1)
            new_value = momentum_update(old_value=protos[k, n != 0, :], new_value=f[n != 0, :], momentum=gamma)
            protos[k, n != 0, :] = new_value
        proto_target[gt_seg == k] = indexs.float() + (num_prototype * k)
    new_prototypes = l2_normalize(protos)
    return proto_logits, proto_target, new_prototypes


def losses(out_seg: Tensor, target: Tensor, contrast_logits: Tensor, contrast_target: Tensor,
           ignore_label: int = -1):
    """``PixelPrototypeCELoss``: (seg CE on upsampled scores, PPC, PPD), unweighted."""
    pred = F.interpolate(out_seg, size=target.shape[-2:], mode="bilinear", align_corners=True)
    seg = F.cross_entropy(pred, target.long(), ignore_index=ignore_label)
    ppc = F.cross_entropy(contrast_logits, contrast_target.long(), ignore_index=ignore_label)
    keep = contrast_target != ignore_label
    logits = torch.gather(contrast_logits[keep, :], 1, contrast_target[keep][:, None].long())
    ppd = (1 - logits).pow(2).mean()
    return seg, ppc, ppd
