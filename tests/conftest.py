"""Fixtures shared by the test modules (helpers that are plain functions live in engine_helpers.py).

Everything a test reads is in this repository: files beside the code, or ``tests/data/`` (its
README says where each file comes from). No test reads a folder outside the checkout.
"""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"


@pytest.fixture(scope="session")
def root(tmp_path_factory):
    """The miniature Cityscapes twin (make-mini, seed 0), prepared; one per test process. Read-only:
    a test that changes data works on a copy."""
    from engine_helpers import make_root

    return make_root(tmp_path_factory.mktemp("cs_mini"))


@pytest.fixture
def one_thread():
    """torch on one thread for the test (the CLI subprocesses run with OMP_NUM_THREADS=1: same
    reductions, same bits)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def plan(tmp_path):
    """The mini plan of configs/pipeline.yaml with seeds 0-2, its run folders under tmp_path."""
    from protoseg.pipeline.experiments import build_plan, load_pipeline_config

    return build_plan(load_pipeline_config(None, {"runs_dir": str(tmp_path / "runs"), "seeds": [0, 1, 2]}))


@pytest.fixture(scope="session")
def pinned_sha256() -> dict[str, str]:
    """tests/data/SHA256SUMS: repository path -> the sha256 its content was checked at."""
    out = {}
    for line in (TEST_DATA / "SHA256SUMS").read_text().splitlines():
        digest, path = line.split(maxsplit=1)
        out[path.lstrip("*")] = digest
    return out


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need CUDA: skipped, with that reason, where torch sees no GPU."""
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="marker gpu: needs CUDA (torch.cuda.is_available() is False)")
    for item in gpu:
        item.add_marker(skip)
