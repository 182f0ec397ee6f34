"""ModelConfig validation and defaults, and pretrained weights from local files (never the hub)."""
from __future__ import annotations

import dataclasses
from dataclasses import fields

import pytest
import torch

from protoseg.method import MethodConfig
from protoseg.models import ModelConfig, build_model
from protoseg.models.backbones import build_backbone


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"backbone": "resnet152"}, "ModelConfig.backbone='resnet152'"),
    ({"head": "linear"}, "ModelConfig.head='linear'"),
    ({"decoder": "aspp"}, "ModelConfig.decoder='aspp'"),
    ({"num_classes": 0}, "ModelConfig.num_classes=0"),
    ({"num_prototypes": 0}, "ModelConfig.num_prototypes=0"),
    ({"method_variant": "released"}, "ModelConfig.method_variant='released'"),
    ({"dropout": 1.5}, "ModelConfig.dropout=1.5"),
    ({"decoder_channels": -3}, "ModelConfig.decoder_channels=-3"),
    ({"method": {"momentum": 0.9}}, "ModelConfig.method: expected a MethodConfig, got dict"),
])
def test_bad_values_name_key_and_value(kwargs: dict, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message.replace("(", r"\(").replace(")", r"\)")):
        ModelConfig(**kwargs)


def test_family_specific_options_are_rejected_elsewhere() -> None:
    with pytest.raises(ValueError, match="window_size=12 applies to Swin backbones only, not backbone='mit_b0'"):
        build_model(backbone="mit_b0", window_size=12)
    with pytest.raises(ValueError, match="drop_path_rate=0.2 applies to Swin and MiT only"):
        build_model(backbone="resnet18", drop_path_rate=0.2)


def test_hrnet_decoder_kernel_switch() -> None:
    """The official release's 3x3 cls_head: 720 x 720 x 9 weights instead of 720 x 720."""
    from protoseg.models.params import count_config_parameters

    one = count_config_parameters(ModelConfig(backbone="hrnet_w48"))
    three = count_config_parameters(ModelConfig(backbone="hrnet_w48", decoder_kernel_size=3, dropout=0.1))
    assert three - one == 720 * 720 * 8
    with pytest.raises(ValueError, match="decoder_kernel_size=3 applies to the hrnet decoder only"):
        build_model(backbone="mit_b0", decoder_kernel_size=3)
    with pytest.raises(ValueError, match="decoder_kernel_size=2: expected an odd size"):
        ModelConfig(decoder_kernel_size=2)


def test_from_dict_rejects_unknown_keys_and_reads_method() -> None:
    with pytest.raises(ValueError, match=r"unknown ModelConfig key\(s\) \['backbon'\]"):
        ModelConfig.from_dict({"backbon": "mit_b0"})
    cfg = ModelConfig.from_dict({"backbone": "mit_b0", "head": "prototype", "num_prototypes": 5,
                                 "method_variant": "official", "method": {"momentum": 0.99}})
    assert cfg.method == MethodConfig.for_variant("official", momentum=0.99) and cfg.method.projection
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"unknown MethodConfig key\(s\) \['num_prototypes'\]"):
        ModelConfig.from_dict({"head": "prototype", "method": {"num_prototypes": 5}})


def test_each_value_has_one_home() -> None:
    """K, the preset, the upsampling mode and the ignore value live in one dataclass each: the model's
    config holds the first three, the dataset the last; the method's knobs repeat none of them."""
    from protoseg.config import DataConfig

    model, method = {f.name for f in fields(ModelConfig)}, {f.name for f in fields(MethodConfig)}
    assert not model & method
    assert {"num_prototypes", "method_variant", "align_corners"} <= model
    assert not {"variant", "ignore_index"} & (model | method | {f.name for f in fields(DataConfig)})


@pytest.mark.parametrize(("backbone", "decoder", "channels", "aux", "aux_channels", "dropout"), [
    ("resnet101", "fcn", 512, True, 256, 0.1),
    ("resnet18", "fcn", 128, True, 64, 0.1),
    ("hrnet_w48", "hrnet", None, False, None, 0.0),
    ("swin_base", "mlp", 768, False, None, 0.1),
    ("mit_b4", "mlp", 768, False, None, 0.1),
    ("mit_b0", "mlp", 256, False, None, 0.1),
])
def test_resolved_defaults_are_the_paper_constructions(backbone, decoder, channels, aux, aux_channels, dropout) -> None:
    cfg = ModelConfig(backbone=backbone).resolved()
    assert (cfg.decoder, cfg.decoder_channels, cfg.aux_head, cfg.aux_channels, cfg.dropout) == (
        decoder, channels, aux, aux_channels, dropout)
    assert cfg.resolved() == cfg


def test_upernet_gets_the_auxiliary_head_and_switches_are_explicit() -> None:
    assert ModelConfig(backbone="swin_base", decoder="upernet").resolved().aux_head is True
    assert ModelConfig(backbone="resnet101", aux_head=False).resolved().aux_head is False
    cfg = ModelConfig(backbone="mit_b2", head="prototype", method_variant="official", num_prototypes=4).resolved()
    assert cfg.method == MethodConfig.for_variant("official")
    assert cfg.align_corners is True  # the release upsamples with align_corners=True
    assert ModelConfig(backbone="mit_b2", head="prototype").resolved().align_corners is False
    assert ModelConfig(backbone="mit_b2", head="prototype", method_variant="official",
                       align_corners=False).resolved().align_corners is False


def test_build_model_keeps_resolved_config_and_accepts_overrides() -> None:
    model = build_model(ModelConfig(backbone="mit_b0"), num_classes=3, head="pixel_query")
    assert model.config == ModelConfig(backbone="mit_b0", num_classes=3, head="pixel_query").resolved()
    assert model.head.queries.shape == (3, 256)
    assert model.aux_head is None


def test_missing_weight_file_is_a_clear_error(tmp_path) -> None:
    missing = tmp_path / "nowhere" / "weights.pth"
    for backbone in ("resnet18", "mit_b0", "hrnet_w18_small", "swin_tiny"):
        with pytest.raises(FileNotFoundError, match=f"pretrained weights file not found: {missing}"):
            build_model(backbone=backbone, pretrained=str(missing))


def test_hub_request_without_hub_weights_is_a_clear_error() -> None:
    # ResNet-18 with the V1c deep stem has no timm ImageNet weights: refused before any download
    with pytest.raises(ValueError, match="timm has no ImageNet weights for resnet18"):
        build_backbone("resnet18", pretrained="hub")


def test_timm_weights_from_local_file(tmp_path) -> None:
    """An ImageNet classification checkpoint (with its fc layer) loads into the features-only backbone."""
    import timm

    source = timm.create_model("resnet18", stem_type="deep", stem_width=32)
    path = tmp_path / "resnet18_v1c.pth"
    torch.save(source.state_dict(), path)
    body = build_model(backbone="resnet18", pretrained=str(path)).backbone.body
    torch.testing.assert_close(body.conv1[0].weight, source.conv1[0].weight)
    torch.testing.assert_close(body.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    torch.testing.assert_close(body.layer2[0].bn1.running_var, source.layer2[0].bn1.running_var)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_mit_weights_from_local_file(tmp_path, suffix: str) -> None:
    """A ``SegformerForImageClassification``-style state dict (``segformer.`` prefix, classifier)."""
    source = build_backbone("mit_b0").body
    state = {f"segformer.{k}": v.clone() for k, v in source.state_dict().items()}
    state["classifier.weight"] = torch.zeros(1000, 256)
    path = tmp_path / f"mit_b0{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    loaded = build_backbone("mit_b0", pretrained=str(path)).body
    for (name, a), b in zip(source.state_dict().items(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    # a checkpoint of another variant is refused with the path in the message
    with pytest.raises(ValueError, match=str(path)):
        build_backbone("mit_b1", pretrained=str(path))


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ModelConfig().backbone = "mit_b0"  # type: ignore[misc]
