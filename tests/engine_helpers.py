"""Shared helpers of the engine tests: a prepared miniature Cityscapes root and a tiny run config."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def make_root(dst: Path) -> Path:
    from protoseg.data.mini import make_mini
    from protoseg.data.prepare import prepare

    raw, root = dst / "raw", dst / "prepared"
    make_mini("cityscapes", raw, seed=0, n_train=300, n_val=60)
    prepare("cityscapes", raw, root, workers=1, progress=False)
    return root


def tiny_config(root: Path, out: Path, name: str = "run", **sections) -> dict:
    """A ~1.4M-parameter MiT-B0 with a 16-channel decoder and the prototype head, 64x64 crops."""
    cfg = {
        "run": {"name": name, "output_dir": str(out), "seed": 0},
        "model": {"backbone": "mit_b0", "head": "prototype", "decoder_channels": 16, "num_prototypes": 2,
                  "dropout": 0.1, "drop_path_rate": 0.1},
        "data": {"dataset": "cityscapes", "root": str(root), "mini": True, "crop_size": [64, 64],
                 "base_scale": [128, 64], "test_scale": [128, 64], "test_mode": "whole",
                 "num_workers": 0, "photometric": False},
        "optim": {"name": "sgd", "lr": 0.01},
        "train": {"iters": 6, "batch_size": 2, "log_interval": 1, "ckpt_interval": 2, "progress": False,
                  "deterministic": True},
    }
    for section, values in sections.items():
        cfg.setdefault(section, {}).update(values)
    return cfg


def write_config(cfg: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli_env(**extra) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def pipeline_env() -> dict:
    """The environment of the real Snakemake/DVC/git runs in the pipeline tests: this venv's tools
    first, one thread, offline, a git identity, no inherited MLflow store."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               DVC_NO_ANALYTICS="1", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def run_cli(args: list[str], *, env: dict | None = None, timeout: int = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "protoseg.cli", *args], capture_output=True, text=True,
                          env=env or cli_env(), timeout=timeout, cwd=REPO, **kw)
