"""Evaluation resizes logits with the model's own ``align_corners`` (the official release: True)."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from protoseg.evaluation.inference import inference, slide_inference, whole_inference
from protoseg.engine.evaluate import evaluate_model


class _Ramp(nn.Module):
    """A 2-class model whose logits differ by a ramp from -1 to 3 across a 1x2 map: upsampled to
    width 8 the class boundary lies at x = 1.75 with align_corners=True and x = 2.5 with False."""

    def __init__(self, align_corners: bool) -> None:
        super().__init__()
        self.align_corners = align_corners

    def forward(self, images):
        d = torch.tensor([-1.0, 3.0]).view(1, 1, 1, 2).expand(images.shape[0], 1, 1, 2)
        return SimpleNamespace(logits=torch.cat([torch.zeros_like(d), d], dim=1))


def _label(align_corners: bool) -> torch.Tensor:
    logits = F.interpolate(_Ramp(align_corners)(torch.zeros(1, 3, 1, 8)).logits, size=(1, 8),
                           mode="bilinear", align_corners=align_corners)
    return logits.argmax(1)[0]


def test_boundary_moves_with_align_corners() -> None:
    assert _label(True).tolist() == [[0, 0, 1, 1, 1, 1, 1, 1]]
    assert _label(False).tolist() == [[0, 0, 0, 1, 1, 1, 1, 1]]


@pytest.mark.parametrize("align_corners", [True, False])
def test_inference_helpers_pass_align_corners(align_corners: bool) -> None:
    fn = lambda t: _Ramp(align_corners)(t).logits  # noqa: E731
    x = torch.zeros(1, 3, 1, 8)
    expected = F.interpolate(fn(x), size=(1, 8), mode="bilinear", align_corners=align_corners)
    assert torch.equal(whole_inference(fn, x, (1, 8), align_corners=align_corners), expected)
    assert torch.equal(slide_inference(fn, x, 2, (1, 8), (1, 8), align_corners=align_corners), expected)
    spec = SimpleNamespace(test_mode="whole", num_classes=2)
    assert torch.equal(inference(fn, x, spec, (1, 8), align_corners=align_corners), expected)


@pytest.mark.parametrize("align_corners", [True, False])
def test_evaluate_model_uses_the_models_align_corners(align_corners: bool) -> None:
    """Labels drawn with the model's own mode are predicted exactly; the other mode's are not."""
    spec = SimpleNamespace(num_classes=2, ignore_index=255, test_mode="whole")
    image = torch.zeros(3, 1, 8)
    own = [{"image": [image], "label": [_label(align_corners)]}]
    other = [{"image": [image], "label": [_label(not align_corners)]}]
    assert evaluate_model(_Ramp(align_corners), own, spec)["aAcc"] == 1.0
    assert evaluate_model(_Ramp(align_corners), other, spec)["aAcc"] == pytest.approx(7 / 8)
