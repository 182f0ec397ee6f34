"""A quiet Snakemake console: the report rules that read many run folders print a one-line message,
not their input list, and their shell commands name no run folder (they read the plan). The commands
are exactly dvc.yaml's, so both tools build the same tables. A real dry run of `tables mlflow figures`
on a temporary copy of the pipeline."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from protoseg.pipeline.experiments import build_plan, load_pipeline_config

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# message prefix -> the DVC stage running the same command
REPORT_RULES = {"MLflow:": "mlflow", "Tables:": "tables", "Claims table": "claims",
                "Prototype diagnostics figure": "diagnostics_figure", "Figures (": "figures"}


def _dry_run(tmp_path: Path) -> str:
    work = tmp_path / "w"
    (work / "results").mkdir(parents=True)
    shutil.copytree(REPO / "results/reference", work / "results/reference")
    (work / "results/benchmarks").mkdir()  # the twins' Bayes ceilings: an input of the figures at mini
    shutil.copy2(REPO / "results/benchmarks/bayes_ceiling.json", work / "results/benchmarks")
    for name in ("Snakefile", "workflows", "configs", "dvc.yaml"):
        src = REPO / name
        (shutil.copytree(src, work / name, ignore=shutil.ignore_patterns("__pycache__")) if src.is_dir()
         else shutil.copy2(src, work / name))
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1")
    proc = subprocess.run([str(BIN / "snakemake"), "-n", "-p", "tables", "mlflow", "figures"], cwd=work,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_report_rules_print_a_message_not_their_inputs(tmp_path):
    out = _dry_run(tmp_path)
    blocks = {}
    for block in re.split(r"\n\s*\n", out):
        lines = [x for x in block.splitlines() if not x.startswith("[")]  # drop the timestamp
        if lines and (m := re.match(r"Job \d+: (.*)", lines[0])):
            prefix = next((p for p in REPORT_RULES if m.group(1).startswith(p)), None)
            if prefix:
                blocks[prefix] = lines
    assert set(blocks) == set(REPORT_RULES), out[-3000:]
    pcfg = load_pipeline_config(None, {"seeds": [0]})
    plan = build_plan(pcfg)
    assert f"MLflow: {len(plan.runs)} run folder(s) and the claims table" in blocks["MLflow:"][0]
    assert f"from {len(plan.keys_for_tables(pcfg['tables']))} run folder(s)" in blocks["Tables:"][0]
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for prefix, lines in blocks.items():
        shown = [x for x in lines if not x.startswith("Reason:")]  # Reason lists what a job just made
        assert not any(re.search(r"input:|metrics\.json|runs/mini/", x) for x in shown), (prefix, shown)
        shell = next(x for x in lines if x.startswith("Shell command:"))[len("Shell command: "):]
        assert "runs/mini/" not in shell, (prefix, shell)
        cmd = re.sub(r" > \S+ 2>&1$", "", shell)
        assert cmd == stages[REPORT_RULES[prefix]]["cmd"], (prefix, cmd)  # the same command as DVC
