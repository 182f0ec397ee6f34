"""Import shims that keep the CPU stack importable.

Called once by the modules that import timm or transformers; does nothing where the plain import works.
"""
from __future__ import annotations

import functools


@functools.cache
def ensure_torchvision_importable() -> None:
    """Make ``import torchvision`` work on the CPU torch build.

    Why: PyPI's torchvision 0.28 is a CUDA build. On the local CPU torch 2.13 its compiled op library
    cannot load, and ``torchvision/_meta_registrations.py`` then registers fake kernels for
    ``torchvision::nms``/``qnms``, whose schemas were never defined: ``import torchvision`` raises
    ``RuntimeError: operator torchvision::nms does not exist``. timm (FrozenBatchNorm2d) and
    transformers' Segformer import torchvision at import time, so they fail the same way. Declaring
    the two schemas first lets the pure-Python parts import; compiled ops (nms, roi_align) stay
    unavailable, and no model of this project uses them. GPU installs (environment.yml) never take
    this path because their plain import succeeds.
    """
    try:
        import torchvision  # noqa: F401

        return
    except RuntimeError as err:
        if "torchvision::nms" not in str(err):
            raise
    import sys

    import torch

    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    lib = torch.library.Library("torchvision", "FRAGMENT")  # noqa: F841 - kept alive below
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBS.append(lib)
    import torchvision  # noqa: F401,F811


_LIBS: list = []  # the Library objects must outlive this call, or the schemas are dropped
