"""ImageNet backbone formats -> protoseg backbone files (``ModelConfig.pretrained=PATH``).

Key names and shapes: shared/spec/checkpoints.md. Each ``convert_*_state`` maps a source state dict
to the state dict of our backbone module (``build_backbone(name)``); ``convert_imagenet`` checks that
it has exactly that module's keys and shapes and writes the file.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from .io import ConvertError, check_keys, load_foreign, state_dict_of, strip_prefix

# ---- HRNet (msra HRNet-Image-Classification cls_hrnet; timm's HRNet uses the same names) ----------
HRNET_CLASSIFICATION_ONLY = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")


def convert_hrnet_msra(sd: dict) -> dict:
    """msra ``hrnetv2_w48_imagenet_pretrained.pth``: drop the 126 classification-only keys, prefix
    ``body.`` (timm's feature model keeps the stem, layer1, transitions and stages as they are)."""
    sd = strip_prefix(sd, "module.")
    return {f"body.{k}": v for k, v in sd.items() if not k.startswith(HRNET_CLASSIFICATION_ONLY)}


# ---- ResNetV1c (open-mmlab resnet101_v1c) -> timm resnet101c (deep stem) -------------------------
_RESNET_STEM = {"stem.0.": "conv1.0.", "stem.1.": "conv1.1.", "stem.3.": "conv1.3.", "stem.4.": "conv1.4.",
                "stem.6.": "conv1.6.", "stem.7.": "bn1."}


def convert_resnet_v1c(sd: dict) -> dict:
    """MMSeg's ``stem.{0,1,3,4,6,7}`` (conv, BN, conv, BN, conv, BN) are timm's
    ``conv1.{0,1,3,4,6}`` and ``bn1``; ``layer*`` keep their names; ``fc.*`` dropped."""
    sd = strip_prefix(strip_prefix(sd, "module."), "backbone.")
    out = {}
    for k, v in sd.items():
        if k.startswith("fc."):
            continue
        for old, new in _RESNET_STEM.items():
            if k.startswith(old):
                k = new + k.removeprefix(old)
                break
        out[f"body.{k}"] = v
    return out


# ---- MiT: NVlabs mit_b*.pth and MMSeg's mit2mmseg form -> transformers SegformerModel -------------
def mmseg_mit_to_nvlabs(sd: dict) -> dict:
    """The inverse of MMSeg's ``mit2mmseg.py`` (checkpoints.md §5): ``layers.{i}.0`` patch embed,
    ``layers.{i}.1.{j}`` blocks (``attn.attn.in_proj`` = q then kv, ``ffn.layers.{0,1,4}`` as 1x1/3x3
    convs), ``layers.{i}.2`` the stage norm."""
    sd = strip_prefix(strip_prefix(sd, "module."), "backbone.")
    out = {}
    for k, v in sd.items():
        m = re.match(r"layers\.(\d+)\.(\d+)\.(.*)", k)
        if not m:
            raise ConvertError(f"unexpected key {k!r} in an MMSeg MiT checkpoint")
        s, part, rest = int(m.group(1)) + 1, int(m.group(2)), m.group(3)
        if part == 0:
            out[f"patch_embed{s}.{rest.replace('projection.', 'proj.')}"] = v
        elif part == 2:
            out[f"norm{s}.{rest}"] = v
        else:
            j, rest = rest.split(".", 1)
            pre = f"block{s}.{j}."
            if rest.startswith("attn.attn.in_proj_"):
                kind = rest.removeprefix("attn.attn.in_proj_")
                c = v.shape[0] // 3
                out[pre + f"attn.q.{kind}"], out[pre + f"attn.kv.{kind}"] = v[:c], v[c:]
            elif rest.startswith("attn.attn.out_proj."):
                out[pre + "attn.proj." + rest.removeprefix("attn.attn.out_proj.")] = v
            elif rest.startswith("ffn.layers."):
                idx, kind = rest.removeprefix("ffn.layers.").split(".", 1)
                name = {"0": "mlp.fc1", "1": "mlp.dwconv.dwconv", "4": "mlp.fc2"}[idx]
                out[pre + f"{name}.{kind}"] = v.flatten(1) if idx in ("0", "4") and kind == "weight" else v
            else:
                out[pre + rest] = v
    return out


def convert_mit_nvlabs(sd: dict) -> dict:
    """NVlabs names -> ``transformers.SegformerModel`` (v5; our ``MiT.body``), stage s -> ``stages.{s-1}``:
    ``patch_embed{s}.{proj,norm}`` -> ``patch_embeddings.{proj,layer_norm}``; in ``block{s}.{j}``
    (``blocks.{j}``): ``attn.q`` -> ``attention.q_proj``, ``attn.kv`` split in rows into ``k_proj``
    (first C) and ``v_proj``, ``attn.proj`` -> ``attention.o_proj``, ``attn.sr``/``attn.norm`` ->
    ``attention.sequence_reduction.{sequence_reduction,layer_norm}``, ``norm1``/``norm2`` ->
    ``layernorm_before``/``layernorm_after``, ``mlp.fc1``/``mlp.dwconv.dwconv``/``mlp.fc2`` unchanged;
    ``norm{s}`` -> ``stages.{s-1}.layer_norm``; ``head.*`` (ImageNet classifier) dropped."""
    sd = strip_prefix(strip_prefix(sd, "module."), "backbone.")
    out = {}
    for k, v in sd.items():
        if k.startswith("head."):
            continue
        if m := re.match(r"patch_embed(\d)\.(proj|norm)\.(.*)", k):
            name = "proj" if m.group(2) == "proj" else "layer_norm"
            out[f"stages.{int(m.group(1)) - 1}.patch_embeddings.{name}.{m.group(3)}"] = v
        elif m := re.match(r"norm(\d)\.(.*)", k):
            out[f"stages.{int(m.group(1)) - 1}.layer_norm.{m.group(2)}"] = v
        elif m := re.match(r"block(\d)\.(\d+)\.(.*)", k):
            pre = f"stages.{int(m.group(1)) - 1}.blocks.{m.group(2)}."
            rest = m.group(3)
            if rest.startswith("attn.kv."):
                kind = rest.removeprefix("attn.kv.")
                c = v.shape[0] // 2
                out[pre + f"attention.k_proj.{kind}"] = v[:c]
                out[pre + f"attention.v_proj.{kind}"] = v[c:]
                continue
            for old, new in (("attn.q.", "attention.q_proj."), ("attn.proj.", "attention.o_proj."),
                             ("attn.sr.", "attention.sequence_reduction.sequence_reduction."),
                             ("attn.norm.", "attention.sequence_reduction.layer_norm."),
                             ("norm1.", "layernorm_before."), ("norm2.", "layernorm_after."),
                             ("mlp.fc1.", "mlp.fc1."), ("mlp.dwconv.dwconv.", "mlp.dwconv.dwconv."),
                             ("mlp.fc2.", "mlp.fc2.")):
                if rest.startswith(old):
                    out[pre + new + rest.removeprefix(old)] = v
                    break
            else:
                raise ConvertError(f"unexpected key {k!r} in an NVlabs MiT checkpoint")
        else:
            raise ConvertError(f"unexpected key {k!r} in an NVlabs MiT checkpoint")
    return {f"body.{k}": v for k, v in out.items()}


def convert_mit_mmseg(sd: dict) -> dict:
    return convert_mit_nvlabs(mmseg_mit_to_nvlabs(sd))


# ---- Swin: microsoft/Swin-Transformer and MMSeg's swin2mmseg form -> timm --------------------------
SWIN_REBUILT = ("relative_position_index", "attn_mask", "relative_coords_table")


UNFOLD_GROUPS = [0, 2, 1, 3]


def unfold_to_official(v: torch.Tensor, dim: int) -> torch.Tensor:
    """Undo MMSeg's PatchMerging order (swin2mmseg ``correct_unfold_*_order``, checkpoints.md §7) on
    ``dim`` of size 4C: MMSeg's entry ``c * 4 + i`` holds the official group ``UNFOLD_GROUPS[i]``, entry c."""
    v = v.movedim(dim, -1)
    c = v.shape[-1] // 4
    out = v.reshape(*v.shape[:-1], c, 4).transpose(-1, -2)[..., UNFOLD_GROUPS, :].reshape(v.shape)
    return out.movedim(-1, dim)


def mmseg_swin_to_official(sd: dict) -> dict:
    """The inverse of MMSeg's ``swin2mmseg.py``: ``stages`` -> ``layers``, ``attn.w_msa.`` -> ``attn.``,
    ``ffn.layers.0.0.``/``ffn.layers.1.`` -> ``mlp.fc1.``/``mlp.fc2.``, ``patch_embed.projection`` ->
    ``patch_embed.proj``, PatchMerging columns (reduction) and norm entries un-permuted."""
    sd = strip_prefix(strip_prefix(sd, "module."), "backbone.")
    out = {}
    for k, v in sd.items():
        if re.match(r"norm\d\.", k):
            continue  # MMSeg's per-output norms (none in an ImageNet file); ours are set separately
        k2 = re.sub(r"^stages\.", "layers.", k)
        k2 = k2.replace("attn.w_msa.", "attn.").replace("ffn.layers.0.0.", "mlp.fc1.")
        k2 = k2.replace("ffn.layers.1.", "mlp.fc2.").replace("patch_embed.projection", "patch_embed.proj")
        if "downsample.reduction.weight" in k2:
            v = unfold_to_official(v, 1)
        elif "downsample.norm." in k2:
            v = unfold_to_official(v, 0)
        out[k2] = v
    return out


def convert_swin_official(sd: dict, num_stages: int = 4) -> dict:
    """Official names -> timm's feature model (our ``Swin.body``): the PatchMerging after stage s
    becomes the downsample at the start of stage s + 1 (``layers.{s+1}.downsample``); buffers the
    model rebuilds (``relative_position_index``, ``attn_mask``) and the classifier (``head.*``,
    final ``norm.*``) are dropped; our per-output norms (``norms.{i}``, MMSeg's ``norm{i}``, in no
    ImageNet file) start as LayerNorm's own init, weight 1 and bias 0."""
    sd = strip_prefix(strip_prefix(sd, "module."), "backbone.")
    out = {}
    for k, v in sd.items():
        if any(n in k for n in SWIN_REBUILT) or k.startswith(("head.", "norm.")):
            continue
        k = re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) + 1}.downsample", k)
        out[f"body.model.{k}"] = v
    return out


def convert_swin_mmseg(sd: dict) -> dict:
    return convert_swin_official(mmseg_swin_to_official(sd))


IMAGENET_FORMATS = {
    "hrnet-msra": (convert_hrnet_msra, ("hrnet",)),
    "resnet-v1c": (convert_resnet_v1c, ("resnet",)),
    "mit-nvlabs": (convert_mit_nvlabs, ("mit",)),
    "mit-mmseg": (convert_mit_mmseg, ("mit",)),
    "swin-official": (convert_swin_official, ("swin",)),
    "swin-mmseg": (convert_swin_mmseg, ("swin",)),
}


def infer_backbone(fmt: str, out: dict) -> tuple[str, int | None]:
    """Our backbone name (and Swin window) for a converted state dict, from its widths and depths."""
    if fmt == "hrnet-msra":
        w = out["body.stage2.0.branches.0.0.conv1.weight"].shape[0]
        return {48: "hrnet_w48", 18: "hrnet_w18", 16: "hrnet_w18_small"}.get(w, f"hrnet_w{w}"), None
    if fmt == "resnet-v1c":
        blocks = len({k.split(".")[2] for k in out if k.startswith("body.layer3.")})
        return {6: "resnet50", 23: "resnet101", 2: "resnet18"}.get(blocks, f"resnet(layer3 x{blocks})"), None
    if fmt.startswith("mit"):
        from protoseg.models.backbones import MIT_DEPTHS

        depths = tuple(len({k.split(".")[4] for k in out if k.startswith(f"body.stages.{i}.blocks.")})
                       for i in range(4))
        width = out["body.stages.0.patch_embeddings.proj.weight"].shape[0]
        for v, d in MIT_DEPTHS.items():
            if tuple(d) == depths and (width == 32) == (v == "b0"):
                return f"mit_{v}", None
        return f"mit(depths {depths})", None
    width = out["body.model.patch_embed.proj.weight"].shape[0]
    table = out["body.model.layers.0.blocks.0.attn.relative_position_bias_table"].shape[0]
    window = (int(round(table ** 0.5)) + 1) // 2
    return {96: "swin_tiny", 128: "swin_base"}.get(width, f"swin(embed {width})"), window


def convert_backbone_state(fmt: str, sd: dict, backbone: str | None = None) -> tuple[str, dict]:
    """Map ``sd`` of format ``fmt`` and check it against ``build_backbone(backbone)`` (meta device;
    ``None``: inferred from the weights); Swin's per-output norms are filled with LayerNorm's init.
    Returns (backbone, state dict)."""
    from protoseg.models.backbones import BACKBONES, backbone_family, build_backbone

    fn, families = IMAGENET_FORMATS[fmt]
    out = fn(sd)
    try:
        guessed, window = infer_backbone(fmt, out)
    except KeyError as err:
        raise ConvertError(f"format {fmt!r}: key {err} missing: not this format") from None
    backbone = backbone or guessed
    if backbone not in BACKBONES or backbone_family(backbone) not in families:
        raise ConvertError(f"format {fmt!r}: backbone {backbone!r} is not one of ours "
                           f"({', '.join(b for b in BACKBONES if backbone_family(b) in families)})")
    with torch.device("meta"):
        expected = build_backbone(backbone, window_size=window).state_dict()
    for k, v in expected.items():
        if k.endswith("num_batches_tracked") and k not in out:  # older files (BN fills it in too)
            out[k] = torch.tensor(0, dtype=torch.long)
        if k.startswith("norms.") and k not in out:
            out[k] = torch.ones(v.shape) if k.endswith(".weight") else torch.zeros(v.shape)
    check_keys(out, expected, f"{fmt} -> {backbone}")
    return backbone, out


def convert_imagenet(fmt: str, src: str | Path, dst: str | Path, backbone: str | None = None) -> dict:
    from protoseg.models.backbones.weights import save_backbone_file

    sd = state_dict_of(load_foreign(src), src)
    try:
        backbone, out = convert_backbone_state(fmt, sd, backbone)
    except ConvertError as err:
        raise ConvertError(f"{src}: {err}") from None
    save_backbone_file(dst, backbone, out, fmt)
    return {"written": str(dst), "keys": len(out), "backbone": backbone}
