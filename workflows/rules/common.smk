# Shared helpers: the validated config, the experiment plan (configs/experiments.yaml at the chosen
# scale, deduplicated into runs by protoseg/pipeline/experiments.py) and the paths of every step.
import os
import sys
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("8.20")

sys.path.insert(0, str(Path(workflow.basedir)))  # the repo's protoseg package, even without an install
# pure Python, no torch (tests/test_architecture_pipeline.py)
from protoseg.atomic_io import sha256_json  # noqa: E402
from protoseg.config.pipeline import MINI_RAW_DIR, parse_seeds, root_pattern  # noqa: E402
from protoseg.pipeline import commands  # noqa: E402  (every rule's command, shared with dvc.yaml)
from protoseg.pipeline.experiments import build_plan, load_pipeline_config, pretrain_config  # noqa: E402

config["seeds"] = parse_seeds(config.get("seeds", [0]))  # --config seeds=3 means [0, 1, 2]
validate(config, schema="../schemas/config.schema.yaml")

SCALE = config["scale"]
PLAN = build_plan(load_pipeline_config(None, {}) | dict(config))
SEEDS = PLAN.seeds
RUNS = f"{config['runs_dir']}/{SCALE}"  # run folders: RUNS/<key>/s<seed>/
RESULTS = config["results_dir"]  # a user's run: results/ (git-ignored); the reference: results/reference
REFERENCE = "results/reference"  # committed reference results (regenerate: --config seeds=3 results_dir=results/reference)
SCALE_CFG = PLAN.scale_config  # configs/scales/<scale>.yaml, read once by build_plan
# the environment Snakemake runs in (e.g. .venv/bin/snakemake) provides protoseg, python, torchrun
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
# every rule runs a command of protoseg.pipeline.commands (config values shell-quoted there), the same
# strings as dvc.yaml's stages; a rule adds only its log redirection ({log:q})
COMMON_ARGS = commands.run_args(SCALE, config["runs_dir"], SEEDS)
CONFIG_ARGS = commands.run_args(SCALE, config["runs_dir"])  # run configs: all seeds
# prepared roots: configs/scales/<scale>.yaml `data.roots`, one <prefix>/{dataset} pattern (the data rules)
ROOTS = SCALE_CFG["data"]["roots"]
DATA_ROOT = root_pattern(ROOTS, f"{PLAN.scale_file}: data.roots")
PRE = SCALE_CFG.get("pretrain") or {}  # the scale's pre-training stage (mini); none at the paper scale

wildcard_constraints:
    key="[0-9a-f]{12}",
    seed="[0-9]+",
    dataset="[a-z0-9-]+",


def data_marker(dataset):
    """meta.json of a prepared root: written last by `protoseg prepare`, so it means 'complete'."""
    return f"{ROOTS[dataset]}/meta.json"


def digest(cfg):
    """16 hex digits of an engine config (a rule param: a changed config re-runs the job although its
    run.yaml input is ancient(), i.e. restored by `dvc pull` without its modification time)."""
    return sha256_json(cfg)[:16]


def run_config_digest(key):
    return digest(PLAN.run_config(key, 0))


def pretrain_config_digest(backbone):
    return digest(pretrain_config(SCALE_CFG, backbone))


def run_metrics(keys, seeds=None):
    return [f"{RUNS}/{k}/s{s}/metrics.json" for k in keys for s in (seeds or SEEDS)]


def table_keys(tables):
    return PLAN.keys_for_tables(tables)


def res(key, name):
    """Resource `name` of run `key` (configs/scales/<scale>.yaml `resources`)."""
    return PLAN.runs[key].resources.get(name)


def train_command(key, seed, threads, attempt):
    """A (run, seed)'s training command (protoseg.pipeline.commands.train: torchrun on multi-GPU jobs)."""
    return commands.train(PLAN.config_path(key), PLAN.seed_overrides(key, int(seed)), threads, attempt,
                          gpus=int(res(key, "gpu") or 0))
