"""Shared by the mini-recipe benchmarks (sweep_mini_recipe, learning_curves): train one
composed engine config as its own ``protoseg train`` process, and keep a JSON file of result rows
current after each point, so an interrupted sweep keeps what it measured."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml


def train_config(cfg: dict, out_dir: Path) -> tuple[Path, float]:
    """Write ``cfg`` to ``out_dir/<run name>.yaml``, train it with ``protoseg train`` on one thread;
    return the run folder and the process's wall seconds."""
    path = out_dir / f"{cfg['run']['name']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "protoseg.cli", "train", "--config", str(path), "--resume", "auto"],
                   check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL)
    return Path(cfg["run"]["output_dir"]) / cfg["run"]["name"], time.perf_counter() - t0


def save_rows(out: Path, rows: list[dict], newest: dict | None = None) -> None:
    """Print the newest row (default: the last) as JSON and rewrite ``out`` with all rows."""
    print(json.dumps(rows[-1] if newest is None else newest), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")
