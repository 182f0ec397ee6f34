"""Checkpoint converters: state dicts synthesised in each source's exact key layout (names and
shapes from the sources' code and tests/data/official_hrnet_w48_proto_keys.tsv, seeded
values), converted, loaded strictly, and checked tensor by tensor or by forward."""
from __future__ import annotations

import datetime
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from protoseg._compat import ensure_torchvision_importable
from protoseg.convert import ConvertError, convert_checkpoint
from protoseg.convert.imagenet import convert_backbone_state
from protoseg.convert.io import load_foreign, state_dict_of
from protoseg.convert.official import convert_release_state
from protoseg.models import ModelConfig, build_model
from protoseg.models.backbones import build_backbone

ensure_torchvision_importable()
import timm  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
KEYS_TSV = REPO / "tests" / "data" / "official_hrnet_w48_proto_keys.tsv"  # the release file's keys (tests/data/README.md)


def _seeded(shape, seed: int, key: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if key.endswith("num_batches_tracked"):
        return torch.tensor(7, dtype=torch.long)
    if key.endswith("running_var"):
        return torch.rand(shape, generator=g) + 0.5
    if key.endswith("relative_position_index"):
        return torch.randint(0, 10, shape, generator=g)
    return torch.randn(shape, generator=g) * 0.1


def _fill(shapes: dict[str, tuple]) -> dict[str, torch.Tensor]:
    return {k: _seeded(s, i, k) for i, (k, s) in enumerate(shapes.items())}


def _meta_state(build) -> dict:
    with torch.device("meta"):
        return build().state_dict()


# ---- official-protoseg ----------------------------------------------------------------------------
def _release_layout(model_sd: dict) -> dict[str, tuple]:
    """The release's keys for a model of ours (names as in tests/data/official_hrnet_w48_proto_keys.tsv)."""
    out: dict[str, tuple] = {"prototypes": tuple(model_sd["head.prototypes"].shape)}
    for k, v in model_sd.items():
        if k.startswith("backbone.body."):
            out["backbone." + k.removeprefix("backbone.body.")] = tuple(v.shape)
    conv = tuple(model_sd["decoder.conv.0.weight"].shape)
    out["cls_head.0.weight"], out["cls_head.0.bias"] = conv, (conv[0],)
    for s in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        out[f"cls_head.1.0.{s}"] = tuple(model_sd[f"decoder.conv.1.{s}"].shape)
    for name in ("proj", "mlp2"):
        for i in (0, 2):
            for s in ("weight", "bias"):
                out[f"proj_head.{name}.{i}.{s}"] = tuple(model_sd[f"head.projection.net.{i}.{s}"].shape)
    for ours, theirs in (("feature_norm", "feat_norm"), ("score_norm", "mask_norm")):
        for s in ("weight", "bias"):
            out[f"{theirs}.{s}"] = tuple(model_sd[f"head.{ours}.{s}"].shape)
    return out


def _release_state(shapes: dict[str, tuple]) -> dict[str, torch.Tensor]:
    sd = _fill({k: s for k, s in shapes.items() if ".mlp2." not in k})
    for k in shapes:  # one module under two names
        if ".mlp2." in k:
            sd[k] = sd[k.replace(".mlp2.", ".proj.")]
    sd["prototypes"] = F.normalize(sd["prototypes"], dim=-1)
    return {"module." + k: v for k, v in sd.items()}


OFFICIAL_W48 = dict(backbone="hrnet_w48", head="prototype", method_variant="official", num_classes=19,
                    decoder_kernel_size=3, dropout=0.1)


def test_release_key_list_maps_onto_the_official_variant_exactly() -> None:
    """All 1850 keys of the release file (the tsv) -> 1845 keys of ours: no missing/unexpected key,
    same shapes (4 mlp2 aliases dropped, the cls_head conv bias folded into its BN)."""
    rows = [line.rstrip("\n").split("\t") for line in KEYS_TSV.read_text().splitlines()[1:]]
    assert len(rows) == 1850
    shapes = {k: () if s == "scalar" else tuple(int(x) for x in s.split("x")) for k, s, _, _ in rows}
    expected = _meta_state(lambda: build_model(ModelConfig(**OFFICIAL_W48)))
    assert _release_layout(expected) == shapes  # the layout written here is the tsv's, key for key
    sd = {"module." + k: torch.zeros(s, dtype=torch.long if k.endswith("tracked") else torch.float32)
          for k, s in shapes.items() if ".mlp2." not in k}
    for k in shapes:
        if ".mlp2." in k:
            sd["module." + k] = sd["module." + k.replace(".mlp2.", ".proj.")]
    out = convert_release_state(sd)
    assert list(out) == list(expected) or set(out) == set(expected)
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: tuple(v.shape) for k, v in expected.items()}


SMALL = dict(OFFICIAL_W48, backbone="hrnet_w18_small")


@pytest.fixture(scope="module")
def release_small(tmp_path_factory):
    """A release-layout file at HRNet-W18-small width: module. prefix, mlp2 aliases, numpy scalars."""
    shapes = _release_layout(build_model(ModelConfig(**SMALL)).state_dict())
    sd = _release_state(shapes)
    path = tmp_path_factory.mktemp("release") / "hrnet_w18s_proto_latest.pth"
    torch.save({"config_dict": {"iters": 80000, "performance": np.float64(0.801), "max_performance": np.float64(0.805),
                                "network": {"backbone": "hrnet18"}}, "state_dict": sd}, path)
    return path, sd


def _hand_forward(sd: dict, x: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The release's HRNet_W48_Proto.forward (eval) on the release tensors, written out by hand;
    the backbone is timm's HRNet loaded with the release's backbone tensors."""
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    body = timm.create_model("hrnet_w18_small", features_only=True, feature_location="", out_indices=(1, 2, 3, 4))
    body.load_state_dict({k.removeprefix("backbone."): v for k, v in sd.items() if k.startswith("backbone.")})
    body.eval()
    feats = body(x)
    h, w = feats[0].shape[-2:]
    cat = torch.cat([feats[0]] + [F.interpolate(f, size=(h, w), mode="bilinear", align_corners=True)
                                  for f in feats[1:]], 1)
    c = F.conv2d(cat, sd["cls_head.0.weight"], sd["cls_head.0.bias"], padding=1)
    c = F.batch_norm(c, sd["cls_head.1.0.running_mean"], sd["cls_head.1.0.running_var"],
                     sd["cls_head.1.0.weight"], sd["cls_head.1.0.bias"], training=False, eps=1e-5)
    c = F.relu(c)
    p = F.conv2d(F.relu(F.conv2d(c, sd["proj_head.proj.0.weight"], sd["proj_head.proj.0.bias"])),
                 sd["proj_head.proj.2.weight"], sd["proj_head.proj.2.bias"])
    p = F.normalize(p, p=2, dim=-1)  # the release's bug: over image width
    b, d = p.shape[:2]
    f = p.permute(0, 2, 3, 1).reshape(-1, d)
    f = F.layer_norm(f, (d,), sd["feat_norm.weight"], sd["feat_norm.bias"])
    f = F.normalize(f, p=2, dim=-1)
    protos = F.normalize(sd["prototypes"], p=2, dim=-1)
    masks = torch.einsum("nd,kmd->nmk", f, protos)
    seg = torch.amax(masks, dim=1)
    seg = F.layer_norm(seg, (num_classes,), sd["mask_norm.weight"], sd["mask_norm.bias"])
    return seg.view(b, h, w, -1).permute(0, 3, 1, 2)


def test_release_checkpoint_converts_and_forwards_like_the_release(release_small) -> None:
    path, sd = release_small
    obj = load_foreign(path)  # numpy scalars pass the allow-list
    assert isinstance(obj["config_dict"]["performance"], np.float64)
    out = convert_release_state(state_dict_of(obj, path), str(path))
    model = build_model(ModelConfig(**SMALL))
    model.load_state_dict(out, strict=True)
    model.eval()
    raw = {k.removeprefix("module."): v for k, v in sd.items()}
    assert torch.equal(model.head.prototypes, raw["prototypes"])
    assert torch.equal(model.decoder.conv[0].weight, raw["cls_head.0.weight"])
    assert torch.equal(model.head.projection.net[2].bias, raw["proj_head.proj.2.bias"])
    assert torch.equal(model.head.score_norm.weight, raw["mask_norm.weight"])
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = model(x).logits
        ref = _hand_forward(sd, x, 19)
    assert ours.shape == ref.shape == (1, 19, 16, 24)
    assert torch.allclose(ours, ref, atol=1e-4, rtol=1e-4), float((ours - ref).abs().max())
    assert torch.equal(ours.argmax(1), ref.argmax(1))


def test_release_duplicate_proj_head_must_agree(release_small) -> None:
    _, sd = release_small
    bad = dict(sd)
    bad["module.proj_head.mlp2.0.bias"] = sd["module.proj_head.mlp2.0.bias"] + 1
    with pytest.raises(ConvertError, match="mlp2.0.bias differs"):
        convert_release_state(bad)
    with pytest.raises(ConvertError, match="prototypes"):
        convert_release_state({k: v for k, v in sd.items() if not k.endswith("prototypes")})


def test_unpickling_is_allow_listed(tmp_path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "when": datetime.date(2022, 1, 1)}, path)
    with pytest.raises(ConvertError, match="not loadable as weights"):
        load_foreign(path)


# ---- ImageNet backbones ---------------------------------------------------------------------------
def _backbone_file(tmp_path, fmt: str, sd: dict, **kw) -> Path:
    src, dst = tmp_path / f"{fmt}.pth", tmp_path / f"{fmt}-converted.pth"
    torch.save(sd, src)
    summary = convert_checkpoint(fmt, src, dst, **kw)
    assert summary["written"] == str(dst)
    return dst


def test_hrnet_msra_key_counts_at_w48() -> None:
    """msra's cls_hrnet names are timm's HRNet's: 1956 keys, 126 classification-only dropped -> 1830."""
    full = _meta_state(lambda: timm.create_model("hrnet_w48"))
    assert len(full) == 1956
    backbone, out = convert_backbone_state("hrnet-msra", full)
    assert backbone == "hrnet_w48" and len(out) == 1830


def test_hrnet_msra_converts_and_equals_timm(tmp_path) -> None:
    full = timm.create_model("hrnet_w18_small").state_dict()
    sd = _fill({k: tuple(v.shape) for k, v in full.items()})
    dst = _backbone_file(tmp_path, "hrnet-msra", sd)
    ours = build_backbone("hrnet_w18_small", pretrained=str(dst)).eval()
    ref = timm.create_model("hrnet_w18_small", features_only=True, feature_location="", out_indices=(1, 2, 3, 4))
    ref.load_state_dict({k: v for k, v in sd.items() if not k.startswith(("incre", "downsamp", "final", "classifier"))})
    ref.eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for a, b in zip(ours(x), ref(x)):
            assert torch.equal(a, b)
    # and through ModelConfig.pretrained
    model = build_model(ModelConfig(backbone="hrnet_w18_small", num_classes=19, pretrained=str(dst)))
    assert torch.equal(model.backbone.body.conv1.weight, sd["conv1.weight"])


def _mmseg_resnet(timm_sd: dict) -> dict:
    """open-mmlab ResNetV1c names (mmseg backbones/resnet.py) for a deep-stem ResNet: stem.{0,1,3,4,6,7}, fc."""
    stem = {"conv1.0.": "stem.0.", "conv1.1.": "stem.1.", "conv1.3.": "stem.3.", "conv1.4.": "stem.4.",
            "conv1.6.": "stem.6.", "bn1.": "stem.7."}
    out = {}
    for k, v in timm_sd.items():
        for old, new in stem.items():
            if k.startswith(old):
                k = new + k.removeprefix(old)
        out[k] = v
    return out


def test_resnet_v1c_key_count_at_r101() -> None:
    full = _meta_state(lambda: timm.create_model("resnet101c"))
    mm = _mmseg_resnet(full)
    assert sum(k.startswith("stem.") for k in mm) == 3 + 3 * 5
    assert len([k for k in mm if not k.startswith("fc.")]) == 636
    backbone, out = convert_backbone_state("resnet-v1c", mm)
    assert backbone == "resnet101" and len(out) == 636


def test_resnet_v1c_converts_and_equals_timm(tmp_path) -> None:
    ref = timm.create_model("resnet18", stem_type="deep", stem_width=32)
    sd = _fill({k: tuple(v.shape) for k, v in ref.state_dict().items()})
    mm = _mmseg_resnet(sd)
    assert "stem.7.running_var" in mm and "conv1.0.weight" not in mm and "fc.weight" in mm
    mm = {k: v for k, v in mm.items() if not k.endswith("num_batches_tracked")}  # older files lack it
    dst = _backbone_file(tmp_path, "resnet-v1c", {"state_dict": mm})
    ours = build_backbone("resnet18", pretrained=str(dst)).eval()
    ref.load_state_dict(sd)
    assert torch.equal(ours.body.conv1[6].weight, mm["stem.6.weight"])
    assert torch.equal(ours.body.bn1.running_mean, mm["stem.7.running_mean"])
    assert torch.equal(ours.body.layer4[1].conv2.weight, mm["layer4.1.conv2.weight"])


MIT_B0 = dict(widths=(32, 64, 160, 256), depths=(2, 2, 2, 2), sr=(8, 4, 2, 1))


def _nvlabs_mit(widths, depths, sr, head: bool = True) -> dict[str, tuple]:
    """NVlabs mix_transformer keys and shapes (NVlabs/SegFormer @65fa8cf)."""
    shapes: dict[str, tuple] = {}
    prev = 3
    for s, (c, d, r) in enumerate(zip(widths, depths, sr), start=1):
        k = 7 if s == 1 else 3
        shapes[f"patch_embed{s}.proj.weight"], shapes[f"patch_embed{s}.proj.bias"] = (c, prev, k, k), (c,)
        shapes[f"patch_embed{s}.norm.weight"], shapes[f"patch_embed{s}.norm.bias"] = (c,), (c,)
        for j in range(d):
            p = f"block{s}.{j}."
            shapes.update({p + "norm1.weight": (c,), p + "norm1.bias": (c,),
                           p + "attn.q.weight": (c, c), p + "attn.q.bias": (c,),
                           p + "attn.kv.weight": (2 * c, c), p + "attn.kv.bias": (2 * c,),
                           p + "attn.proj.weight": (c, c), p + "attn.proj.bias": (c,)})
            if r > 1:
                shapes.update({p + "attn.sr.weight": (c, c, r, r), p + "attn.sr.bias": (c,),
                               p + "attn.norm.weight": (c,), p + "attn.norm.bias": (c,)})
            shapes.update({p + "norm2.weight": (c,), p + "norm2.bias": (c,),
                           p + "mlp.fc1.weight": (4 * c, c), p + "mlp.fc1.bias": (4 * c,),
                           p + "mlp.dwconv.dwconv.weight": (4 * c, 1, 3, 3), p + "mlp.dwconv.dwconv.bias": (4 * c,),
                           p + "mlp.fc2.weight": (c, 4 * c), p + "mlp.fc2.bias": (c,)})
        shapes[f"norm{s}.weight"], shapes[f"norm{s}.bias"] = (c,), (c,)
        prev = c
    if head:
        shapes["head.weight"], shapes["head.bias"] = (1000, widths[-1]), (1000,)
    return shapes


def _mit2mmseg(sd: dict) -> dict:
    """MMSeg's mit2mmseg renaming, applied to NVlabs tensors."""
    out = {}
    for k, v in sd.items():
        if k.startswith("head."):
            continue
        if m := re.match(r"patch_embed(\d)\.(.*)", k):
            out[f"layers.{int(m.group(1)) - 1}.0.{m.group(2).replace('proj.', 'projection.')}"] = v
        elif m := re.match(r"norm(\d)\.(.*)", k):
            out[f"layers.{int(m.group(1)) - 1}.2.{m.group(2)}"] = v
        else:
            s, j, rest = re.match(r"block(\d)\.(\d+)\.(.*)", k).groups()
            pre = f"layers.{int(s) - 1}.1.{j}."
            if rest.startswith("attn.q."):
                kind = rest.removeprefix("attn.q.")
                out[pre + f"attn.attn.in_proj_{kind}"] = torch.cat([v, sd[f"block{s}.{j}.attn.kv.{kind}"]])
            elif rest.startswith("attn.kv."):
                continue
            elif rest.startswith("attn.proj."):
                out[pre + "attn.attn.out_proj." + rest.removeprefix("attn.proj.")] = v
            elif rest.startswith("mlp.fc1."):
                out[pre + "ffn.layers.0." + rest.removeprefix("mlp.fc1.")] = v.reshape(*v.shape, 1, 1) if v.dim() == 2 else v
            elif rest.startswith("mlp.dwconv.dwconv."):
                out[pre + "ffn.layers.1." + rest.removeprefix("mlp.dwconv.dwconv.")] = v
            elif rest.startswith("mlp.fc2."):
                out[pre + "ffn.layers.4." + rest.removeprefix("mlp.fc2.")] = v.reshape(*v.shape, 1, 1) if v.dim() == 2 else v
            else:
                out[pre + rest] = v
    return out


def test_mit_key_counts() -> None:
    from protoseg.models.backbones import MIT_DEPTHS

    counts = {"b0": 178, "b1": 178, "b2": 334, "b3": 574, "b4": 834, "b5": 1054}
    mm_counts = {"b0": 160, "b1": 160, "b2": 300, "b3": 516, "b4": 750, "b5": 948}
    for v, n in counts.items():
        widths = (32, 64, 160, 256) if v == "b0" else (64, 128, 320, 512)
        shapes = _nvlabs_mit(widths, tuple(MIT_DEPTHS[v]), (8, 4, 2, 1))
        assert len(shapes) == n
        meta = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
        assert len(_mit2mmseg({k: torch.empty(s) for k, s in shapes.items()}) if v == "b0" else
                   [k for k in shapes if not k.startswith("head.") and ".attn.kv." not in k]) == mm_counts[v]
        if v in ("b0", "b5"):
            backbone, out = convert_backbone_state("mit-nvlabs", meta)
            assert backbone == f"mit_{v}"


def test_mit_nvlabs_and_mmseg_convert(tmp_path) -> None:
    sd = _fill(_nvlabs_mit(**MIT_B0))
    dst = _backbone_file(tmp_path, "mit-nvlabs", sd)
    ours = build_backbone("mit_b0", pretrained=str(dst))
    st = ours.body.stages[0].blocks[1].attention
    assert torch.equal(st.q_proj.weight, sd["block1.1.attn.q.weight"])
    assert torch.equal(st.k_proj.weight, sd["block1.1.attn.kv.weight"][:32])
    assert torch.equal(st.v_proj.bias, sd["block1.1.attn.kv.bias"][32:])
    assert torch.equal(st.o_proj.weight, sd["block1.1.attn.proj.weight"])
    assert torch.equal(st.sequence_reduction.sequence_reduction.weight, sd["block1.1.attn.sr.weight"])
    assert torch.equal(ours.body.stages[3].layer_norm.bias, sd["norm4.bias"])
    assert torch.equal(ours.body.stages[2].blocks[0].mlp.dwconv.dwconv.weight, sd["block3.0.mlp.dwconv.dwconv.weight"])
    nv = torch.load(dst, weights_only=True)["state_dict"]
    mm_dst = _backbone_file(tmp_path, "mit-mmseg", _mit2mmseg(sd))
    mm = torch.load(mm_dst, weights_only=True)["state_dict"]
    assert set(mm) == set(nv) and all(torch.equal(mm[k], nv[k]) for k in nv)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert all(torch.isfinite(f).all() for f in ours.eval()(x))


def _official_swin_tiny() -> dict[str, torch.Tensor]:
    """microsoft/Swin-Transformer Swin-T keys (@f82860b): 190 keys, with the buffers the
    model rebuilds (relative_position_index, attn_mask)."""
    embed, depths, heads, w = 96, (2, 2, 6, 2), (3, 6, 12, 24), 7
    shapes: dict[str, tuple] = {"patch_embed.proj.weight": (embed, 3, 4, 4), "patch_embed.proj.bias": (embed,),
                                "patch_embed.norm.weight": (embed,), "patch_embed.norm.bias": (embed,)}
    res = 56
    for s, (d, h) in enumerate(zip(depths, heads)):
        c = embed * 2 ** s
        for j in range(d):
            p = f"layers.{s}.blocks.{j}."
            shapes.update({p + "norm1.weight": (c,), p + "norm1.bias": (c,),
                           p + "attn.relative_position_bias_table": ((2 * w - 1) ** 2, h),
                           p + "attn.relative_position_index": (w * w, w * w),
                           p + "attn.qkv.weight": (3 * c, c), p + "attn.qkv.bias": (3 * c,),
                           p + "attn.proj.weight": (c, c), p + "attn.proj.bias": (c,),
                           p + "norm2.weight": (c,), p + "norm2.bias": (c,),
                           p + "mlp.fc1.weight": (4 * c, c), p + "mlp.fc1.bias": (4 * c,),
                           p + "mlp.fc2.weight": (c, 4 * c), p + "mlp.fc2.bias": (c,)})
            if j % 2 == 1 and res > w:
                shapes[p + "attn_mask"] = ((res // w) ** 2, w * w, w * w)
        if s < 3:
            shapes[f"layers.{s}.downsample.reduction.weight"] = (2 * c, 4 * c)
            shapes[f"layers.{s}.downsample.norm.weight"] = (4 * c,)
            shapes[f"layers.{s}.downsample.norm.bias"] = (4 * c,)
        res //= 2
    shapes.update({"norm.weight": (768,), "norm.bias": (768,), "head.weight": (1000, 768), "head.bias": (1000,)})
    assert len(shapes) == 190 and sum(k.endswith("attn_mask") for k in shapes) == 5
    return _fill(shapes)


def _swin2mmseg(sd: dict) -> dict:
    """MMSeg's swin2mmseg, applied to official tensors."""
    out = {}
    for k, v in sd.items():
        if k.startswith("head."):
            continue
        if "downsample.reduction.weight" in k:
            o, i = v.shape
            v = v.reshape(o, 4, i // 4)[:, [0, 2, 1, 3], :].transpose(1, 2).reshape(o, i)
        elif "downsample.norm." in k:
            v = v.reshape(4, -1)[[0, 2, 1, 3], :].transpose(0, 1).reshape(-1)
        k = re.sub(r"^layers\.", "stages.", k)
        k = k.replace("attn.", "attn.w_msa.") if "attn_mask" not in k else k
        k = k.replace("mlp.fc1.", "ffn.layers.0.0.").replace("mlp.fc2.", "ffn.layers.1.")
        k = k.replace("patch_embed.proj", "patch_embed.projection")
        out[k] = v
    return out


def test_swin_official_matches_timms_own_filter(tmp_path) -> None:
    """Our conversion gives, for every key, the tensor timm's own checkpoint filter puts there."""
    from timm.models.swin_transformer import checkpoint_filter_fn

    sd = _official_swin_tiny()
    dst = _backbone_file(tmp_path, "swin-official", {"model": sd})
    ours = torch.load(dst, weights_only=True)["state_dict"]
    full = timm.create_model("swin_tiny_patch4_window7_224")
    ref = checkpoint_filter_fn(dict(sd), full)
    body = {k.removeprefix("body.model."): v for k, v in ours.items() if k.startswith("body.model.")}
    assert body and all(torch.equal(v, ref[k]) for k, v in body.items())
    assert all(torch.equal(ours[f"norms.{i}.weight"], torch.ones(96 * 2 ** i)) for i in range(4))
    model = build_model(ModelConfig(backbone="swin_tiny", num_classes=19, pretrained=str(dst)))
    assert torch.equal(model.backbone.body.model.layers[1].downsample.reduction.weight,
                       sd["layers.0.downsample.reduction.weight"])


def test_swin_mmseg_equals_official(tmp_path) -> None:
    sd = _official_swin_tiny()
    a = torch.load(_backbone_file(tmp_path, "swin-official", sd), weights_only=True)["state_dict"]
    b = torch.load(_backbone_file(tmp_path, "swin-mmseg", {"state_dict": _swin2mmseg(sd)}), weights_only=True)["state_dict"]
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_wrong_format_is_a_clear_error(tmp_path) -> None:
    sd = _official_swin_tiny()
    src = tmp_path / "swin.pth"
    torch.save(sd, src)
    with pytest.raises(ConvertError, match="unexpected key .patch_embed.proj.weight. in an NVlabs MiT"):
        convert_checkpoint("mit-nvlabs", src, tmp_path / "out.pth")
    assert not (tmp_path / "out.pth").exists()
    with pytest.raises(ConvertError, match="hrnet"):
        convert_checkpoint("hrnet-msra", src, tmp_path / "out.pth", backbone="mit_b0")


def test_cli_reports_a_foreign_file_in_one_line(tmp_path) -> None:
    from engine_helpers import run_cli

    src = tmp_path / "not_a_checkpoint.pth"
    src.write_bytes(b"garbage")
    proc = run_cli(["convert-checkpoint", "--format", "hrnet-msra", str(src), str(tmp_path / "out.pth")])
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "not_a_checkpoint.pth" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "out.pth").exists()
