"""The CUDA path at the paper's sizes (``tests/gpu_correctness.py``: what each check compares and its
tolerance). Marker ``gpu``: skipped without CUDA; on a GPU machine ``pytest -m gpu`` runs them (a few
minutes on one GPU). The same checks run on CPU at tiny sizes in ``tests/test_gpu_check.py``."""
from __future__ import annotations

import pytest
import torch

import gpu_correctness as gc
from gpu_workloads import PAPER  # benchmarks/, put on sys.path by gpu_correctness

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device())


def test_sinkhorn_in_fp16_and_bf16(cuda):
    out, checks = gc.sinkhorn_dtypes(PAPER, cuda)
    assert not gc.failures(checks), (gc.failures(checks), out)


def test_official_step_on_the_device_equals_the_cpu(cuda):
    out, checks = gc.official_step(PAPER, cuda)
    assert not gc.failures(checks), (gc.failures(checks), out)


def test_nccl_ddp_with_syncbn_trains_as_the_plain_model(cuda):
    out, checks = gc.ddp_syncbn(PAPER, cuda)
    assert out["backend"] == "nccl"
    assert not gc.failures(checks), (gc.failures(checks), out)


@pytest.mark.parametrize("spec", PAPER.models, ids=[m.name for m in PAPER.models])
def test_amp_training_of_the_paper_models(cuda, spec):
    out, checks = gc.amp(PAPER, spec, cuda)
    assert set(out["runs"]) == {"fp32", "fp16", "bf16"}
    assert not gc.failures(checks), (gc.failures(checks), {m: r["skipped_steps"] for m, r in out["runs"].items()})
