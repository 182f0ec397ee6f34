"""No shell injection: config values with spaces, quotes and ';' reach the Snakemake shell commands
quoted. A real run of the data rules (make_mini, and prepare with such a `paper_sources` path) in a
working directory whose own name has them too; the other rules' commands checked in a dry run."""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from protoseg.data.mini import make_mini

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NASTY = "a b 'c' \"d\" ; touch PWNED ;"


def _env():
    import os

    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1",
               HF_HUB_OFFLINE="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _work(tmp_path: Path) -> Path:
    work = tmp_path / f"work {NASTY}"
    work.mkdir()
    for name in ("Snakefile", "workflows", "configs"):
        src = REPO / name
        (shutil.copytree(src, work / name, ignore=shutil.ignore_patterns("__pycache__")) if src.is_dir()
         else shutil.copy2(src, work / name))
    return work


@pytest.mark.slow
def test_data_rules_quote_config_paths(tmp_path):
    work = _work(tmp_path)
    raw = tmp_path / f"raw {NASTY}" / "ADEChallengeData2016"
    make_mini("ade20k", raw, seed=0)
    (work / "extra.yaml").write_text(yaml.safe_dump({"paper_sources": {"ade20k": str(raw)}}))
    # the data rules are those of the scale (its data.roots): the paper root at scale=paper, the twin at mini
    for target, scale in (("data/prepared/ade20k/meta.json", "paper"),
                          ("data/mini/prepared/coco-stuff-10k/meta.json", "mini")):
        proc = subprocess.run([str(BIN / "snakemake"), target, "-c1", "--configfile", "extra.yaml",
                               "--config", f"scale={scale}"],
                              cwd=work, env=_env(), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "data/prepared/ade20k/meta.json").is_file()
    assert (work / "data/mini/prepared/coco-stuff-10k/meta.json").is_file()
    assert not list(tmp_path.rglob("PWNED")), "a config value was run as a shell command"
    assert (raw / "images").is_dir()  # the source is untouched


@pytest.mark.slow
def test_every_rule_command_quotes_config_values(tmp_path):
    work = _work(tmp_path)
    runs, results = f"runs {NASTY}", f"results {NASTY}"
    proc = subprocess.run([str(BIN / "snakemake"), "-n", "-p", "mini_smoke", "params", "--config",
                           f"runs_dir={runs}", f"results_dir={results}"],
                          cwd=work, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    commands = [ln.split("Shell command: ", 1)[1] for ln in proc.stdout.splitlines() if "Shell command: " in ln]
    assert len(commands) >= 5
    for cmd in commands:
        words = shlex.split(cmd)
        assert "PWNED" not in words and "touch" not in words, cmd  # no word escaped its quotes
    joined = [shlex.split(c) for c in commands]
    config = next(w for w in joined if w[:3] == ["protoseg", "experiments", "config"])
    assert config[config.index("--runs-dir") + 1] == runs
    train = next(w for w in joined if "train" in w and "--config" in w)
    assert train[train.index("--config") + 1] == config[config.index("--out") + 1]
    assert train[train.index("--config") + 1].startswith(f"{runs}/mini/")
    params = next(w for w in joined if "params" in w)
    assert params[params.index("--out") + 1] == f"{results}/params_mini.json"
    smoke = next(w for w in joined if "tables" in w)
    assert smoke[smoke.index("--out") + 1] == f"{results}/smoke"
