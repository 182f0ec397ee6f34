"""The Snakemake workflow and DVC pipeline, run for real on small targets in temporary copies.

- dry-run of `tables` lists the expected jobs (mini and paper scale);
- `snakemake mini_smoke` end to end (make-mini, train, evaluate, table), then nothing left to do;
- dvc.yaml is the one generated from the experiment list;
- `dvc repro smoke` in a temporary git repository with a local-directory remote, `dvc push`, a fresh
  clone, `dvc pull`, and Snakemake then sees nothing to redo (DVC does not keep modification times);
- the reverse: `snakemake mini_smoke` records its stages in dvc.lock (onsuccess: dvc commit -f), so
  `dvc status` is clean and `dvc repro` has nothing to do; pushed, cloned and pulled, neither tool
  has anything to redo.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from protoseg.pipeline.experiments import build_plan, pretrain_backbones
from tests.engine_helpers import pipeline_env

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PIPELINE_FILES = ("Snakefile", "workflows", "configs", "dvc.yaml")


def _env():
    return pipeline_env()


def _run(args, cwd, timeout=600, check=True):
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def _copy_pipeline(dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "results").mkdir()
    shutil.copytree(REPO / "results/reference", dst / "results/reference")
    for name in PIPELINE_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst / name)
    (dst / ".gitignore").write_text("/logs/\n/data/mini/raw/\n.snakemake/\n/mlruns/\n")
    return dst


def _job_counts(output: str) -> dict[str, int]:
    block = output.split("Job stats:", 1)[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M)}


def _snakemake(cwd, *args, **kw):
    return _run([BIN / "snakemake", *args], cwd, **kw)


@pytest.mark.slow
def test_dry_run_tables_lists_every_run(tmp_path):
    work = _copy_pipeline(tmp_path / "w")
    out = _snakemake(work, "-n", "tables", "--config", "seeds=[0,1]").stdout
    counts = _job_counts(out)
    plan = build_plan(scale="mini", seeds=[0, 1])
    tables = [t for t in plan.paper_tables] + ["discrepancy"]
    keys = plan.keys_for_tables(tables)  # the runs of the tables' entries, after dedupe
    n_runs, n_data = len(keys), len(plan.datasets(keys))
    n_pre = len(pretrain_backbones([plan.runs[k] for k in keys]))
    # one twin per dataset, the pre-training twin and one pre-training run per backbone, one run.yaml
    # per run and per pre-training run (run_config, pretrain_config), the parameter counts, the tables
    # and the claims table
    assert n_runs > 0 and n_data == 4 and n_pre > 0
    assert counts == {"make_mini": n_data, "make_mini_pretrain": 1, "pretrain_config": n_pre, "pretrain": n_pre,
                      "run_config": n_runs, "train": 2 * n_runs, "params": 1, "build_tables": 1, "build_claims": 1,
                      "tables": 1, "total": n_data + 1 + 2 * n_pre + 3 * n_runs + 4}
    paper = _job_counts(_snakemake(work, "-n", "tables", "--config", "scale=paper").stdout)
    paper_runs = len(build_plan(scale="paper", seeds=[0]).keys_for_tables(tables))
    assert paper["prepare"] == n_data and "make_mini" not in paper and paper["train"] == paper_runs


@pytest.mark.slow
def test_an_entry_is_a_target_by_its_name(tmp_path):
    """`snakemake -c1 t2-segf-b4`: the entry's run (its key from the plan), every seed, and what it needs;
    an entry that shares its run with others builds that one run."""
    work = _copy_pipeline(tmp_path / "w")
    plan = build_plan(scale="mini", seeds=[0, 1])
    key = plan.entry_run["t2-segf-b4"]
    out = _snakemake(work, "-n", "t2-segf-b4", "--config", "seeds=[0,1]").stdout
    counts = {name: int(n) for name, n in re.findall(r"^([\w.-]+)\s+(\d+)$", out.split("Job stats:", 1)[1], re.M)}
    assert counts == {"make_mini": 1, "make_mini_pretrain": 1, "pretrain_config": 1, "pretrain": 1,
                      "run_config": 1, "train": 2, "t2-segf-b4": 1, "total": 8}
    assert f"runs/mini/{key}/s0/metrics.json" in out and f"runs/mini/{key}/s1/metrics.json" in out
    shared = plan.runs[plan.entry_run["t5c-mu0.999"]]  # the default ablation run, shared by several entries
    assert len(shared.entries) > 1
    for name in {"t5c-mu0.999", shared.entries[0]}:
        out = _snakemake(work, "-n", name).stdout
        assert f"runs/mini/{shared.key}/s0/metrics.json" in out and f"rule {name}:" in out


@pytest.mark.slow
def test_train_rule_resources_for_slurm(tmp_path):
    """Paper scale: 4 GPUs in ONE task, torchrun launching 4 processes, retries for preemption."""
    work = _copy_pipeline(tmp_path / "w")
    out = _snakemake(work, "-n", "-p", "tables", "--config", "scale=paper").stdout
    job = out.split("rule train:", 1)[1].split("\n\n", 1)[0]
    resources = re.search(r"resources: (.*)", job).group(1).split(", ")
    assert {"tasks_per_gpu=0", "nodes=1", "cpus_per_task=32", "mem_mb=192000", "runtime=2880",
            "gpu=4"} <= set(resources), job
    assert "torchrun --standalone --nproc_per_node=4 -m protoseg.cli train --config runs/paper/" in out
    assert "--resume auto" in out


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_mini_smoke_end_to_end(tmp_path):
    work = _copy_pipeline(tmp_path / "w")
    _snakemake(work, "-c2", "mini_smoke")
    csv = (work / "results/smoke/smoke.csv").read_text().splitlines()
    assert len(csv) == 2 and "Ours, MiT-B0 (smoke)" in csv[1]
    assert list((work / "logs/mini/benchmarks/train").glob("*.tsv"))
    assert list((work / "logs/mini/train").glob("*.log"))
    assert "Nothing to be done" in _snakemake(work, "-n", "mini_smoke").stdout


def test_dvc_yaml_is_generated_from_the_experiment_list():
    proc = _run([BIN / "protoseg", "experiments", "dvc-yaml", "--check"], REPO, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dvc_repro_push_clone_pull_then_snakemake_has_nothing_to_do(tmp_path):
    work = _copy_pipeline(tmp_path / "a")
    remote = tmp_path / "remote"
    _run(["git", "init", "-q"], work)
    _run([BIN / "dvc", "init", "-q"], work)
    _run([BIN / "dvc", "remote", "add", "-d", "local", remote], work)
    _run(["git", "add", "-A"], work)
    _run(["git", "commit", "-qm", "pipeline"], work)
    _run([BIN / "dvc", "repro", "smoke"], work)
    assert (work / "results/smoke/smoke.md").is_file()
    lock = (work / "dvc.lock").read_text()
    key = build_plan(scale="mini").keys_for_tables(["smoke"])[0]
    assert f"runs/mini/{key}/s0" in lock and "md5:" in lock
    _run([BIN / "dvc", "push", "-q"], work)
    _run(["git", "add", "-A"], work)
    _run(["git", "commit", "-qm", "results"], work)
    assert "up to date" in _run([BIN / "dvc", "status", "smoke"], work).stdout.lower()

    clone = tmp_path / "b"
    _run(["git", "clone", "-q", work, clone], tmp_path)
    assert not (clone / f"runs/mini/{key}/s0/checkpoints").exists()
    _run([BIN / "dvc", "pull", "--with-deps", "smoke"], clone)  # the whole pipeline: `dvc pull`
    assert (clone / f"runs/mini/{key}/s0/checkpoints/final.pt").is_file()
    out = _snakemake(clone, "-n", "mini_smoke").stdout
    assert "Nothing to be done" in out, out


def _dvc_repo(work: Path, remote: Path) -> None:
    _run(["git", "init", "-q"], work)
    _run([BIN / "dvc", "init", "-q"], work)
    _run([BIN / "dvc", "remote", "add", "-d", "local", remote], work)
    _run(["git", "add", "-A"], work)
    _run(["git", "commit", "-qm", "pipeline"], work)


def _nothing_for_dvc(cwd: Path) -> None:
    status = _run([BIN / "dvc", "status", "smoke"], cwd).stdout.lower()
    assert "up to date" in status, status
    repro = _run([BIN / "dvc", "repro", "smoke"], cwd).stdout
    assert "didn't change, skipping" in repro and "Running stage" not in repro, repro


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_snakemake_records_dvc_lock_then_clone_pull_has_nothing_to_redo(tmp_path):
    """Snakemake -> DVC: after `snakemake mini_smoke` DVC agrees (status clean, repro skips every stage);
    a collaborator who clones and pulls has nothing to redo with either tool."""
    work = _copy_pipeline(tmp_path / "a")
    _dvc_repo(work, tmp_path / "remote")
    out = _snakemake(work, "-c2", "mini_smoke")
    assert "dvc.lock: recorded" in out.stderr
    key = build_plan(scale="mini").keys_for_tables(["smoke"])[0]
    lock = (work / "dvc.lock").read_text()
    assert f"runs/mini/{key}/s0" in lock and "smoke:" in lock and "evaluate_" in lock
    _nothing_for_dvc(work)
    assert "Nothing to be done" in _snakemake(work, "-n", "mini_smoke").stdout
    _run([BIN / "dvc", "push", "-q"], work)
    _run(["git", "add", "-A"], work)
    _run(["git", "commit", "-qm", "results"], work)

    clone = tmp_path / "b"
    _run(["git", "clone", "-q", work, clone], tmp_path)
    _run([BIN / "dvc", "pull", "-q", "--with-deps", "smoke"], clone)
    assert (clone / f"runs/mini/{key}/s0/checkpoints/final.pt").is_file()
    assert "Nothing to be done" in _snakemake(clone, "-n", "mini_smoke").stdout
    _nothing_for_dvc(clone)
