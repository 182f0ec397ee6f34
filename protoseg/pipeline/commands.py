"""The pipeline's commands, written once: the Snakemake rules (``workflows/rules/*.smk``) and the DVC
stages (``dvc.yaml``, built by ``protoseg.pipeline.dvc``) run the strings these functions return, so
both tools run the same ``protoseg`` command a user would type. Every value that comes from a config
(paths, names, keys) is shell-quoted here; the callers add only their log redirection.
"""
from __future__ import annotations

import shlex
from collections.abc import Sequence

q = shlex.quote
PS = "protoseg"  # the project's command; every step is a call of it


def run_args(scale: str, runs_dir: str, seeds: Sequence[int] | None = None) -> str:
    """``--scale S [--seeds 0,1,2] --runs-dir R``: which plan a command reads (all seeds: no --seeds)."""
    seed_args = ["--seeds", ",".join(str(s) for s in seeds)] if seeds is not None else []
    return shlex.join(["--scale", scale, *seed_args, "--runs-dir", str(runs_dir)])


def make_mini(name: str, dataset: str, raw: str, root: str) -> str:
    """A miniature twin ``name`` written in the official layout at ``raw``, then prepared as ``dataset``."""
    return (f"rm -rf {q(raw)} && {PS} make-mini {q(name)} --dst {q(raw)} && "
            f"{PS} prepare {q(dataset)} --src {q(raw)} --dst {q(root)} --workers 1 --quiet")


def prepare(dataset: str, src: str, root: str, workers: int) -> str:
    """An official download at ``src`` prepared into ``root``."""
    return f"{PS} prepare {q(dataset)} --src {q(src)} --dst {q(root)} --workers {int(workers)} --quiet"


def run_config(key: str, args: str, out: str) -> str:
    """The engine config (run.yaml) of run ``key``, for all its seeds."""
    return f"{PS} experiments config {q(key)} {args} --out {q(out)}"


def pretrain_config(backbone: str, args: str, out: str) -> str:
    """The engine config of the pre-training run of ``backbone``."""
    return f"{PS} experiments config --pretrain {q(backbone)} {args} --out {q(out)}"


def pretrain(config: str, checkpoint: str, out: str, threads: int = 1) -> str:
    """A pre-training run, then its backbone exported to ``out`` (its checkpoint removed)."""
    return (f"OMP_NUM_THREADS={int(threads)} {PS} train --config {q(config)} --resume auto && "
            f"{PS} export-backbone --remove-checkpoint {q(checkpoint)} {q(out)}")


def train(config: str, overrides: Sequence[str], threads: int, attempt: int | None = None, gpus: int = 0) -> str:
    """One (run, seed): ``protoseg train`` on the run's run.yaml with the seed's overrides; ``attempt``:
    Snakemake's retry counter. ``gpus`` > 1: ONE process per job, torchrun owning all of the job's GPUs
    (never one task per GPU, the SLURM plugin trap of docs/slurm.md), after a check that the job sees
    them; ``threads`` are then split between its processes."""
    retry = f" --attempt {int(attempt)}" if attempt is not None else ""
    launcher, check = PS, ""
    if gpus > 1:
        threads = max(1, threads // gpus)
        launcher = f"torchrun --standalone --nproc_per_node={int(gpus)} -m protoseg.cli"
        check = (f"python -c 'import torch,sys; n=torch.cuda.device_count(); "
                 f"sys.exit(0 if n=={int(gpus)} else f\"expected {int(gpus)} GPUs, the job sees {{n}}\")' && ")
    return (f"{check}OMP_NUM_THREADS={int(threads)} {launcher} train --config {q(config)} --resume auto{retry} "
            f"{shlex.join(overrides)}")


def evaluate(checkpoint: str, split: str, out: str, threads: int = 1) -> str:
    """A checkpoint evaluated on ``split`` into the folder ``out``."""
    return (f"OMP_NUM_THREADS={int(threads)} {PS} evaluate --checkpoint {q(checkpoint)} --split {q(split)} "
            f"--out {q(out)} --quiet")


def params(args: str, out: str) -> str:
    """Parameter counts of every model of the plan."""
    return f"{PS} experiments params {args} --out {q(out)}"


def tables(args: str, names: Sequence[str], out: str, params_file: str | None = None) -> str:
    """The paper tables ``names`` from the run folders (with the parameter counts of ``params_file``)."""
    counts = f" --params {q(params_file)}" if params_file else ""
    return f"{PS} tables {args} --tables {shlex.join(names)}{counts} --out {q(out)}"


def claims(args: str, out: str) -> str:
    """The claims table: every comparison the paper makes, judged on the seeds."""
    return f"{PS} claims {args} --out {q(out)}"


def figures(args: str, params_file: str, ceilings: Sequence[str], out: str) -> str:
    """Table 4's panel (with the twins' Bayes ceilings, mini scale), Fig. 3 and Fig. 5."""
    ceiling = "".join(f"--ceiling {q(c)} " for c in ceilings)
    return f"OMP_NUM_THREADS=1 {PS} figures {args} --params {q(params_file)} {ceiling}--out {q(out)}"


def diagnostics_figure(args: str, out: str) -> str:
    """The prototype diagnostics figure (Table 5b's and the discrepancy table's runs)."""
    return f"{PS} figures {args} --which diagnostics --out {q(out)}"


def log_mlflow(args: str, tracking_uri: str, artifact_root: str, claims_file: str, out: str) -> str:
    """Every (entry, seed) and every claims row into MLflow (one serial writer, idempotent)."""
    return (f"{PS} experiments log-mlflow {args} --tracking-uri {q(tracking_uri)} "
            f"--artifact-root {q(artifact_root)} --claims {q(claims_file)} --out {q(out)}")


def compare(reference: str, ours: str, out: str) -> str:
    """A user's tables beside the committed reference, row by row."""
    return f"{PS} compare-results --reference {q(reference)} --ours {q(ours)} --out {q(out)}"
