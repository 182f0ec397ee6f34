"""Subcommands ``train``, ``evaluate``, ``predict`` and ``log-mlflow`` (registered in ``protoseg/cli.py``).

Errors leave each subcommand as exceptions; ``protoseg/cli.py`` maps them to the exit statuses
(the CLI's one contract; the table is in ``protoseg.engine.signals``, docs/errors.md): a resumable
stop after a checkpoint is ``Preempted`` (75, inside SLURM the job was requeued; retry with
``--resume auto``) or ``Interrupted`` (130, Ctrl-C); a non-finite loss is ``NonFiniteLossError`` (3).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _train(args: argparse.Namespace) -> int:
    """``protoseg train``; with ``--attempt N`` (the workflow's retry counter) behind the retry gate of
    ``provenance``: the status of each attempt is recorded in ``<run>/last_exit.json``."""
    from protoseg.config import load_config

    from . import provenance

    cfg = load_config(args.config, args.overrides)  # errors: protoseg.cli's one error path (status 2)
    if args.attempt is None:
        return _train_config(cfg, args)
    refused = provenance.refused_retry(cfg.run_dir, args.attempt)
    if refused is not None:
        return refused
    provenance.begin_attempt(cfg.run_dir)
    code = 1
    try:
        code = _train_config(cfg, args)
    except BaseException as err:
        code = provenance.exit_status(err)
        raise
    finally:
        provenance.record_exit(cfg.run_dir, args.attempt, code)
    return code


def _train_config(cfg, args: argparse.Namespace) -> int:
    """Train; user errors, a non-finite loss (3), preemption (75) and Ctrl-C (130) leave as exceptions
    and get their status and message from protoseg.cli's one table."""
    from .train import train

    metrics = train(cfg, resume=args.resume, allow_data_change=getattr(args, "allow_data_change", False))
    if metrics:
        print(json.dumps({"run_dir": str(cfg.run_dir), "mIoU": metrics["mIoU"], "aAcc": metrics["aAcc"]}))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import build_eval_loader, evaluate_model, write_eval_outputs
    from .predict import load_run

    run = load_run(args.checkpoint, args.overrides)
    split = args.split or run.spec.eval_split
    loader = build_eval_loader(run.cfg.data.root, run.spec, split, num_workers=args.workers,
                               batch_size=run.cfg.data.eval_batch_size)
    metrics = evaluate_model(run.model, loader, run.spec, device=run.device, progress=not args.quiet)
    out = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent.parent / f"eval_{split}"
    path = write_eval_outputs(out, metrics, run.spec.class_names, extra={
        "iteration": run.iteration, "split": split, "dataset": run.spec.name,
        "checkpoint": str(args.checkpoint), "seed": run.cfg.run.seed})
    print(json.dumps({"metrics": str(path), "mIoU": metrics["mIoU"], "aAcc": metrics["aAcc"]}))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from protoseg.config import ConfigError

    from .predict import load_run, predict_images

    run = load_run(args.checkpoint, args.overrides)
    if args.format == "cityscapes-submission":  # Table 6: labelId PNGs and a zip (engine/submission.py)
        from .submission import write_cityscapes_submission

        print(json.dumps(write_cityscapes_submission(run, args.split, args.out)))
        return 0
    if not args.images:
        raise ConfigError("predict: give IMAGES (or --format cityscapes-submission --split SPLIT)")
    written = predict_images(run, args.images, args.out, nearest=not args.no_nearest)
    print(json.dumps({"written": [str(p) for p in written]}))
    return 0


def _log_mlflow(args: argparse.Namespace) -> int:
    from .tracking import log_runs

    results = log_runs(args.run_dirs, tracking_uri=args.tracking_uri, artifact_root=args.artifact_root)
    print(json.dumps(results, indent=1))
    return 0


def add_parser(subparsers) -> None:
    t = subparsers.add_parser(
        "train", help="train a model from a config file (DDP under torchrun or srun)",
        description="Train from --config with key=value overrides (e.g. train.iters=100 optim.lr=0.02). "
                    "The resolved config is written to <run.output_dir>/<run.name>/config.yaml.")
    t.add_argument("--config", help="YAML config (see docs/engine.md); omitted: all defaults")
    t.add_argument("--resume", metavar="auto|CKPT",
                   help="'auto': continue from the newest valid checkpoint of the run; or a checkpoint path")
    t.add_argument("--allow-data-change", action="store_true",
                   help="resume even though the prepared data (data hash) differs from the checkpoint's; "
                        "recorded in run_info.json")
    t.add_argument("--attempt", type=int, metavar="N",
                   help="the workflow's retry counter: each attempt's exit status goes to <run>/last_exit.json "
                        "and attempt N > 1 runs only after exit 75 (preempted) or a killed attempt")
    t.add_argument("overrides", nargs="*", metavar="key=value")
    t.set_defaults(func=_train)

    e = subparsers.add_parser(
        "evaluate", help="evaluate a checkpoint: metrics JSON, per-class IoU CSV, confusion matrix",
        description="Whole-image or sliding-window inference (per dataset) over a split.")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--split", help="default: the dataset's evaluation split")
    e.add_argument("--out", help="output folder (default: <run>/eval_<split>)")
    e.add_argument("--workers", type=int, default=0, help="data loader workers")
    e.add_argument("--quiet", action="store_true")
    e.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. data.root=/elsewhere")
    e.set_defaults(func=_evaluate)

    p = subparsers.add_parser(
        "predict", help="palette overlays and nearest-prototype maps for images",
        description="Predict IMAGES with a checkpoint; writes <stem>_overlay.png, <stem>_pred.png and, "
                    "for prototype heads, <stem>_prototypes.png (Fig. 3).")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-nearest", action="store_true", help="skip the nearest-prototype map")
    p.add_argument("--format", choices=("overlay", "cityscapes-submission"), default="overlay",
                   help="cityscapes-submission: labelId PNGs of a prepared --split and submission.zip")
    p.add_argument("--split", default="test", help="with --format cityscapes-submission (default: test)")
    p.add_argument("images", nargs="*")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="key=value")
    p.set_defaults(func=_predict)

    m = subparsers.add_parser(
        "log-mlflow", help="log finished runs into MLflow (idempotent, safe to run concurrently)",
        description="One MLflow run per (tracking.entry, seed) in the experiment tracking.experiment; "
                    "the same content (metrics.json + config) is skipped, changed content replaces the "
                    "old MLflow run.")
    m.add_argument("run_dirs", nargs="+")
    m.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI or sqlite:///<repo>/mlruns/mlflow.db")
    m.add_argument("--artifact-root", help="default: <repo>/mlruns/artifacts")
    m.set_defaults(func=_log_mlflow)
