"""DVC on a fresh clone of this repository (issue 22): `dvc repro --dry` exits 0 and lists every stage,
`dvc repro <a small target>` runs, and after `snakemake` builds stages the on-success record step
records only those (dvc.lock) so `dvc status` reports them up to date. Real git, real DVC, real
Snakemake, in a clone of the committed HEAD (with its dvc.yaml, dvc.lock and .dvc/config)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests.engine_helpers import pipeline_env

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _env():
    return pipeline_env()


def _run(args, cwd, check=True):
    # the timeout only guards a hang (minutes), never the machine's speed
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=1500)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture()
def clone(tmp_path):
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    dst = tmp_path / "clone"
    _run(["git", "clone", "-q", REPO, dst], tmp_path)
    return dst


def _stages(clone: Path) -> dict:
    return yaml.safe_load((clone / "dvc.yaml").read_text())["stages"]


def _up_to_date(clone: Path, *stages: str) -> None:
    out = _run([BIN / "dvc", "status", *stages], clone).stdout
    for stage in stages:
        assert f"{stage}:" not in out, out


def test_dvc_repro_dry_lists_every_stage_and_a_small_target_runs(clone):
    dry = _run([BIN / "dvc", "repro", "--dry"], clone)  # exit 0 (it was 255: treeverse/dvc#9818)
    listed = set(re.findall(r"Running stage '([^']+)'", dry.stdout))
    assert listed == set(_stages(clone)), sorted(set(_stages(clone)) ^ listed)

    target = next(s for s in _stages(clone) if s.startswith("config_pretrain_"))
    _run([BIN / "dvc", "repro", target], clone)
    assert (clone / _stages(clone)[target]["outs"][0]).is_file()
    _up_to_date(clone, target)


def test_snakemake_records_only_what_it_built_and_dvc_status_agrees(clone):
    stages = _stages(clone)
    config = next(s for s in stages if s.startswith("config_pretrain_"))
    root = stages["data_cityscapes"]["outs"][0]
    lock_before = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]
    out = _run([BIN / "snakemake", "-c1", stages[config]["outs"][0], f"{root}/meta.json"], clone)
    recorded = re.search(r"dvc\.lock: recorded (\d+) stage\(s\) built by Snakemake in ([\d.]+) s", out.stderr)
    assert recorded and int(recorded.group(1)) == 2, out.stderr
    _up_to_date(clone, config, "data_cityscapes")
    lock_after = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]
    changed = {s for s in set(lock_before) | set(lock_after) if lock_before.get(s) != lock_after.get(s)}
    assert changed <= {config, "data_cityscapes"}, changed  # nothing it did not build

    # a second run builds nothing and leaves dvc.lock as it is
    again = _run([BIN / "snakemake", "-c1", stages[config]["outs"][0], f"{root}/meta.json"], clone)
    assert "Nothing to be done" in again.stdout + again.stderr
    assert yaml.safe_load((clone / "dvc.lock").read_text())["stages"] == lock_after
