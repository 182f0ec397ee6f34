"""A run's fixed costs stay cut (benchmarks/bench_run_overhead.py): the engine imports no backbone library,
and a run imports only the library of the family it builds."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
HEAVY = ("matplotlib", "timm", "torchvision", "transformers")


def _imported_after(code: str) -> list[str]:
    """Which of ``HEAVY`` a fresh interpreter has imported after running ``code``."""
    probe = f"import sys\n{code}\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return ast.literal_eval(proc.stdout.strip().splitlines()[-1])  # a printed list of names


def test_engine_import_loads_no_backbone_library():
    assert _imported_after("import protoseg.engine.train") == []


def test_resnet_micro_run_loads_timm_only():
    """Engine and a ResNet micro model with the prototype head: no transformers (torchvision comes
    with timm); a MiT micro model: no timm."""
    code = ("import protoseg.engine.train\n"
            "from protoseg.models import build_model\n"
            "build_model(backbone='resnet_micro', head='prototype', num_classes=3)")
    assert _imported_after(code) == ["timm", "torchvision"]
    code = ("import protoseg.engine.train\n"
            "from protoseg.models import build_model\n"
            "build_model(backbone='mit_micro', head='softmax', num_classes=3)")
    mit = _imported_after(code)
    assert "timm" not in mit and "transformers" in mit


def test_mit_micro_builds_and_runs():
    import torch

    from protoseg.models.backbones import MIT_DEPTHS, BACKBONES, build_backbone

    assert "mit_b0" in BACKBONES and MIT_DEPTHS["b0"] == [2, 2, 2, 2]  # the lazy re-export
    torch.manual_seed(0)
    feats = build_backbone("mit_micro").eval()(torch.rand(1, 3, 32, 32))
    assert [tuple(f.shape) for f in feats] == [(1, 16, 16, 16), (1, 32, 8, 8), (1, 64, 4, 4), (1, 128, 2, 2)]
