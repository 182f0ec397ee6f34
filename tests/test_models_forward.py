"""Forward shapes and output strides of every backbone, and the assembled model in train and eval."""
from __future__ import annotations

import math

import pytest
import torch

from protoseg.heads import HeadOutput
from protoseg.models import SegmentationOutput, build_model
from protoseg.models.backbones import BACKBONES, build_backbone

EXPECTED = {  # name -> (channels, strides)
    "resnet18": ((64, 128, 256, 512), (4, 8, 8, 8)),
    "resnet50": ((256, 512, 1024, 2048), (4, 8, 8, 8)),
    "resnet101": ((256, 512, 1024, 2048), (4, 8, 8, 8)),
    "hrnet_w18_small": ((16, 32, 64, 128), (4, 8, 16, 32)),
    "hrnet_w18": ((18, 36, 72, 144), (4, 8, 16, 32)),
    "hrnet_w48": ((48, 96, 192, 384), (4, 8, 16, 32)),
    "swin_tiny": ((96, 192, 384, 768), (4, 8, 16, 32)),
    "swin_base": ((128, 256, 512, 1024), (4, 8, 16, 32)),
    "mit_b0": ((32, 64, 160, 256), (4, 8, 16, 32)),
    **{f"mit_b{i}": ((64, 128, 320, 512), (4, 8, 16, 32)) for i in range(1, 6)},
    # the mini scale's micro backbones: first stage at stride 2
    "resnet_micro": ((16, 32, 64, 128), (2, 4, 8, 16)),
    "hrnet_micro": ((16, 32, 64, 128), (2, 4, 8, 16)),
    "swin_micro": ((32, 64, 128, 256), (2, 4, 8, 16)),
    "mit_micro": ((16, 32, 64, 128), (2, 4, 8, 16)),
}
# big members: construction and one forward only on a 32x32 input; small ones also on an odd size
SMALL = ("resnet18", "hrnet_w18_small", "swin_tiny", "mit_b0", "resnet_micro", "swin_micro", "mit_micro")


def test_every_backbone_is_listed() -> None:
    assert set(BACKBONES) == set(EXPECTED)


@pytest.mark.parametrize("name", list(EXPECTED))
@torch.no_grad()
def test_backbone_shapes_and_strides(name: str) -> None:
    # Swin-B at window 12 (the MMSeg ADE20K construction), Swin-T at the default 7
    backbone = build_backbone(name, **({"window_size": 12} if name == "swin_base" else {})).eval()
    if name.startswith("swin"):
        assert backbone.window_size == {"swin_base": 12, "swin_micro": 4}.get(name, 7)
    channels, strides = EXPECTED[name]
    assert backbone.out_channels == channels and backbone.strides == strides
    sizes = [(32, 32)] + ([(70, 90)] if name in SMALL else [])
    for h, w in sizes:
        feats = backbone(torch.randn(1, 3, h, w))
        assert [tuple(f.shape) for f in feats] == [
            (1, c, math.ceil(h / s), math.ceil(w / s)) for c, s in zip(channels, strides)]
        assert all(torch.isfinite(f).all() for f in feats)


def test_resnet_is_v1c_deep_stem_and_dilated() -> None:
    body = build_backbone("resnet101").body
    stem = [m for m in body.conv1 if isinstance(m, torch.nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size) for m in stem] == [
        (3, 32, (3, 3)), (32, 32, (3, 3)), (32, 64, (3, 3))]
    # stage 3: first block dilation 1 (contract_dilation), then 2; stage 4: 2, then 4; no striding
    assert body.layer3[0].conv2.dilation == (1, 1) and body.layer3[1].conv2.dilation == (2, 2)
    assert body.layer4[0].conv2.dilation == (2, 2) and body.layer4[1].conv2.dilation == (4, 4)
    assert body.layer3[0].conv2.stride == (1, 1) and body.layer4[0].conv2.stride == (1, 1)
    assert len(body.layer3) == 23


# (backbone, decoder, expected D, output stride of the logits)
COMBOS = [("resnet18", "fcn", 128, 8), ("hrnet_w18_small", "hrnet", 240, 4), ("swin_tiny", "mlp", 768, 4),
          ("mit_b0", "mlp", 256, 4), ("mit_b0", "upernet", 512, 4), ("hrnet_w18_small", "fcn", 128, 32)]


@pytest.mark.parametrize(("backbone", "decoder", "d", "stride"), COMBOS)
def test_model_train_and_eval(backbone: str, decoder: str, d: int, stride: int) -> None:
    torch.manual_seed(0)
    model = build_model(backbone=backbone, decoder=decoder, num_classes=5, head="prototype", num_prototypes=2)
    assert model.decoder.out_channels == d
    assert model.head.prototypes.shape == (5, 2, d)
    images, labels = torch.randn(2, 3, 32, 64), torch.randint(0, 5, (2, 32, 64))
    labels[:, :8] = 255
    out = model.train()(images, labels)
    assert isinstance(out, SegmentationOutput) and isinstance(out.head, HeadOutput)
    assert out.logits.shape == (2, 5, 32 // stride, 64 // stride)
    has_aux = decoder in ("fcn", "upernet")
    assert (out.aux_logits is not None) == has_aux
    if has_aux:  # stage 3: stride 8 (dilated ResNet) or 16
        s3 = model.backbone.strides[2]
        assert out.aux_logits.shape == (2, 5, 32 // s3, 64 // s3)
    assert set(out.head.losses) == {"ppc", "ppd"}
    loss = out.logits.float().logsumexp(1).mean() + sum(t.value for t in out.head.losses.values())
    if has_aux:
        loss = loss + model.aux_loss_weight * out.aux_logits.mean()
    loss.backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    model.eval()
    with torch.no_grad():
        out = model(images)
        assert out.aux_logits is None and not out.head.losses
        assert model.predict(images).shape == (2, 5, 32, 64)


@pytest.mark.parametrize(("head", "variant"), [("softmax", "paper"), ("pixel_query", "paper"),
                                             ("learnable_prototypes", "paper"), ("prototype", "paper"),
                                             ("prototype", "official")])
def test_every_head_on_a_small_model(head: str, variant: str) -> None:
    model = build_model(backbone="mit_b0", head=head, num_classes=7, num_prototypes=3, method_variant=variant)
    out = model.train()(torch.randn(2, 3, 32, 32), torch.randint(0, 7, (2, 32, 32)))
    assert out.logits.shape == (2, 7, 8, 8)
    model.eval()
    with torch.no_grad():
        assert model.predict(torch.randn(1, 3, 40, 48)).shape == (1, 7, 40, 48)


def test_decoder_features_are_what_the_head_sees() -> None:
    """The decoder output is the D-channel map before any classifier: a softmax head on it gives
    the model's logits."""
    model = build_model(backbone="mit_b0", num_classes=4).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        feats = model.decoder(model.backbone(x))
        assert feats.shape == (1, 256, 8, 8)
        torch.testing.assert_close(model(x).logits, model.head.classifier(feats))

