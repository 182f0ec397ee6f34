"""Subcommands ``experiments``, ``tables``, ``compare-results`` and ``figures`` (registered in
``protoseg/cli.py``).

``protoseg experiments list|config|train|log-mlflow|params|dvc-yaml`` expose the experiment list to
Snakemake, DVC and users; ``protoseg tables`` and ``protoseg figures`` build ``results/``. The
Snakemake rules and DVC stages call exactly these commands. Help texts are plain text (no RST).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml


def _plan(args):
    from .experiments import build_plan, load_pipeline_config

    overrides = {"scale": getattr(args, "scale", None), "runs_dir": getattr(args, "runs_dir", None)}
    if getattr(args, "seeds", None):
        from .experiments import ExperimentError

        try:
            overrides["seeds"] = [int(s) for s in args.seeds.split(",")]
        except ValueError:
            raise ExperimentError(f"--seeds {args.seeds!r}: expected comma-separated integers, e.g. 0,1,2") from None
    pcfg = load_pipeline_config(args.pipeline_config, overrides)
    return pcfg, build_plan(pcfg)


def _list(args) -> int:
    pcfg, plan = _plan(args)
    keys = plan.keys_for_tables(args.tables) if args.tables else list(plan.runs)
    if args.format == "keys":
        print("\n".join(keys))
    elif args.format == "dirs":
        print("\n".join(plan.run_dir(k, s) for k in keys for s in plan.seeds))
    else:
        print(json.dumps({k: {"entries": plan.runs[k].entries, "dataset": plan.runs[k].dataset,
                              "schedule": plan.runs[k].schedule, "resources": plan.runs[k].resources,
                              "config": plan.runs[k].config} for k in keys}, indent=1))
    n_entries = sum(len(plan.runs[k].entries) for k in keys)
    print(f"# {len(keys)} runs for {n_entries} entries, x {len(plan.seeds)} seed(s), scale {plan.scale}",
          file=sys.stderr)
    return 0


def _config(args) -> int:
    _, plan = _plan(args)
    if args.key not in plan.runs:
        print(f"error: no run {args.key!r} at scale {plan.scale}", file=sys.stderr)
        return 2
    text = yaml.safe_dump(plan.run_config(args.key, args.seed), sort_keys=False)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    else:
        print(text, end="")
    return 0


EXIT_RECORD = "last_exit.json"  # the exit status of the job's latest attempt (rank 0)
RETRYABLE = (75,)  # preempted after a checkpoint; a process killed outright leaves no record


def _exit_status(err: BaseException) -> int:
    """The status ``protoseg.cli.main`` gives an exception escaping a subcommand."""
    from protoseg.cli import EXIT_INTERRUPTED, classify_os_error, user_error_types

    if isinstance(err, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(err, OSError):
        return classify_os_error(err)[0]
    if isinstance(err, SystemExit):
        return err.code if isinstance(err.code, int) else 1
    return 2 if isinstance(err, user_error_types()) else 1


def _pretrain(args) -> int:
    """Pre-train ``args.backbone`` (``protoseg train`` on the composed config), then export it."""
    from protoseg.engine.cli import _train as engine_train
    from protoseg.engine.export import export_backbone
    from protoseg.pipeline.experiments import ExperimentError, load_scale, pretrain_config, pretrained_path

    pcfg, _ = _plan(args)
    scale = load_scale(pcfg["scale"], pcfg.get("scales_dir", "configs/scales"))
    try:
        cfg = pretrain_config(scale, args.backbone)
    except ExperimentError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    run_dir = Path(cfg["run"]["output_dir"]) / cfg["run"]["name"]
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "run.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    code = engine_train(argparse.Namespace(config=str(path), overrides=[], resume="auto",
                                           allow_data_change=False))
    if code:
        return code
    export_backbone(run_dir / "checkpoints" / "final.pt", pretrained_path(scale, args.backbone))
    return 0


def _train(args) -> int:
    """Compose the run's config and hand it to the engine (same exit statuses as ``protoseg train``).

    ``--attempt N`` (the workflow's retry counter): the exit status of each attempt is recorded in
    ``<run>/last_exit.json``; attempt N > 1 runs only if attempt N-1 exited 75 (preempted after a
    checkpoint) or left no record (killed: node failure, out of memory). Any other failure would
    repeat, so the retry stops at once with the same status. Snakemake has no per-status retry;
    this is it."""
    from protoseg.data.atomic import write_json_atomic
    from protoseg.engine.cli import _train as engine_train

    _, plan = _plan(args)
    if args.key not in plan.runs:
        print(f"error: no run {args.key!r} at scale {plan.scale}", file=sys.stderr)
        return 2
    cfg = plan.run_config(args.key, args.seed)
    run_dir = Path(plan.run_dir(args.key, args.seed))
    record = run_dir / EXIT_RECORD
    if args.attempt > 1 and record.is_file():
        try:
            prev = json.loads(record.read_text())
        except ValueError:
            prev = {}
        code = prev.get("exit") if isinstance(prev, dict) else None
        if isinstance(code, int) and code not in RETRYABLE and code != 0:
            print(f"error: not retrying run {args.key} seed {args.seed} (attempt {args.attempt}): attempt "
                  f"{prev.get('attempt')} exited with status {code}, a failure a retry would repeat (only 75, "
                  "preemption, and a killed process are retried); fix the cause and run the workflow again; "
                  "see docs/errors.md", file=sys.stderr)
            return code
    main_rank = os.environ.get("RANK", "0") == "0"
    run_dir.mkdir(parents=True, exist_ok=True)
    if main_rank:
        record.unlink(missing_ok=True)  # killed from here on: no record, the retry runs
    path = run_dir / "run.yaml"  # the composed (unresolved) config; the engine writes config.yaml
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    if main_rank:
        write_json_atomic(run_dir / "machine.json", machine_description())
    ns = argparse.Namespace(config=str(path), overrides=list(args.overrides), resume=args.resume,
                            allow_data_change=args.allow_data_change)
    code = 1
    try:
        code = engine_train(ns)
    except BaseException as err:
        code = _exit_status(err)
        raise
    finally:
        if main_rank:
            write_json_atomic(record, {"attempt": args.attempt, "exit": code})
    return code


def machine_description() -> dict:
    """The machine a run trains on (the tables' ``machine`` column): CPU model and cores, GPU names,
    the thread count; floats drift between machines (docs/pipeline.md, compare-results)."""
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus = []
    try:
        import torch

        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no CUDA build or driver: no GPUs
        pass
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    desc = f"{cpu} ({os.cpu_count()} cores, OMP_NUM_THREADS={threads})" + (f"; {len(gpus)}x {gpus[0]}" if gpus else "")
    return {"description": desc, "cpu": cpu, "cpu_count": os.cpu_count(), "gpus": gpus,
            "omp_num_threads": threads, "platform": platform.platform()}


def _log_mlflow(args) -> int:
    from .tracking import log_plan_runs

    _, plan = _plan(args)
    keys = plan.keys_for_tables(args.tables) if args.tables else list(plan.runs)
    if args.claims:  # a missing or malformed claims table fails before anything is logged
        from .claims_tracking import read_claims_csv

        read_claims_csv(args.claims)
    results = log_plan_runs(plan, keys, tracking_uri=args.tracking_uri, artifact_root=args.artifact_root)
    counts: dict[str, int] = {}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    claims: list[dict] = []
    if args.claims:  # the claims table's rows, from the CSV `protoseg claims` wrote
        from .claims_tracking import log_claims

        claims = log_claims(args.claims, scale=plan.scale, tracking_uri=args.tracking_uri,
                            artifact_root=args.artifact_root)
        for r in claims:
            counts[f"claims_{r['status']}"] = counts.get(f"claims_{r['status']}", 0) + 1
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results + claims, indent=1) + "\n")
    print(json.dumps(counts))
    return 0


def _params(args) -> int:
    from .params import parameter_table

    pcfg, plan = _plan(args)
    table = parameter_table(plan, scales_dir=pcfg.get("scales_dir", "configs/scales"))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(json.dumps({"written": args.out, "models": len(table)}))
    return 0


def _dvc_yaml(args) -> int:
    from .dvc import dvc_yaml

    pcfg, plan = _plan(args)
    text = dvc_yaml(plan, pcfg)
    if args.check:
        current = Path(args.out).read_text() if Path(args.out).is_file() else ""
        if current != text:
            print(f"error: {args.out} is out of date; run `protoseg experiments dvc-yaml`", file=sys.stderr)
            return 2
        return 0
    Path(args.out).write_text(text)
    print(json.dumps({"written": args.out}))
    return 0


def _tables(args) -> int:
    from .tables import build_tables

    pcfg, plan = _plan(args)
    names = args.tables or pcfg.get("tables")
    written = build_tables(plan, names, out_dir=args.out, params_file=args.params)
    print(json.dumps({"written": [str(p) for p in written]}))
    return 0


def _claims(args) -> int:
    from .claims import build_claims

    _, plan = _plan(args)
    written, counts, _ = build_claims(plan, args.out)
    print(json.dumps({"written": [str(p) for p in written], "verdicts": counts}))
    return 0


def _figures(args) -> int:
    from .figures import build_figures

    pcfg, plan = _plan(args)
    which = [w for w in args.which if w != "diagnostics"]
    written = build_figures(plan, out_dir=args.out, which=which, params_file=args.params) if which else []
    if "diagnostics" in args.which:
        from .diagnostics_figure import prototype_diagnostics_figure

        written.append(prototype_diagnostics_figure(plan, Path(args.out) / "prototype_diagnostics.png"))
    print(json.dumps({"written": [str(p) for p in written]}))
    return 0


def _compare(args) -> int:
    from .compare import DRIFT_TOLERANCE_PP, CompareError, compare, render

    tolerance = DRIFT_TOLERANCE_PP if args.tolerance is None else args.tolerance
    try:
        rows = compare(args.reference, args.ours, tolerance)
    except CompareError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    text = render(rows, tolerance, args.reference, args.ours)
    print(text, end="")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    bad = [r for r in rows if r.verdict.startswith(("DIFFERS", "outside"))]
    if args.check and bad:  # exit 2 like dvc-yaml --check: 1 is reserved for bugs (docs/errors.md)
        print(f"error: {len(bad)} row(s) of {args.ours} differ from {args.reference} beyond the tolerance "
              f"({tolerance} pp): {', '.join(f'{r.table} {r.row}' for r in bad[:3])}"
              + (", ..." if len(bad) > 3 else ""), file=sys.stderr)
        return 2
    return 0


def _common(p: argparse.ArgumentParser, *, tables: bool = False) -> None:
    p.add_argument("--pipeline-config", default=None, help="default: configs/pipeline.yaml")
    p.add_argument("--scale", choices=("mini", "paper"), help="override the config's scale")
    p.add_argument("--seeds", help="override the config's seeds, e.g. 0,1,2")
    p.add_argument("--runs-dir", help="override the config's runs_dir")
    if tables:
        p.add_argument("--tables", nargs="+", help="only the entries of these tables (keys of the list)")


def add_parser(subparsers) -> None:
    ex = subparsers.add_parser("experiments", help="the experiment list: runs, configs, training, MLflow, DVC",
                               description="Expose configs/experiments.yaml at a scale as deduplicated runs.")
    sub = ex.add_subparsers(dest="experiments_command", metavar="ACTION")

    p = sub.add_parser("list", help="the distinct runs (after dedupe)",
                       description="List the distinct runs of the experiment list at a scale (entries with identical configs share one run).")
    _common(p, tables=True)
    p.add_argument("--format", choices=("keys", "dirs", "json"), default="keys")
    p.set_defaults(func=_list)

    p = sub.add_parser("config", help="print (or --out) the engine config of a run and seed",
                       description="Print (or write with --out) the full engine config of run KEY and a seed.")
    _common(p)
    p.add_argument("key")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out")
    p.set_defaults(func=_config)

    p = sub.add_parser("train", help="train a run of the list (what Snakemake and DVC run)",
                       description="Train run KEY of the experiment list for one seed, in <runs_dir>/<scale>/<key>/s<seed>/. "
                                   "This is the command the pipeline runs for the paper's experiments; protoseg train trains "
                                   "a config file of your own. Exit 75: preempted, retry with --resume auto.")
    _common(p)
    p.add_argument("key")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", metavar="auto|CKPT")
    p.add_argument("--allow-data-change", action="store_true",
                   help="resume although the prepared data changed (recorded in run_info.json)")
    p.add_argument("--attempt", type=int, default=1,
                   help="the workflow's attempt number: attempt > 1 runs only after exit 75 or a kill")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="engine overrides (paths, workers)")
    p.set_defaults(func=_train)

    p = sub.add_parser("pretrain", help="pre-train a backbone once on the scale's pre-training set and "
                       "export it (what Snakemake and DVC run)",
                       description="Train a softmax model on the scale's pre-training twin, then write its "
                       "backbone to the file every run of that backbone fine-tunes from.")
    p.add_argument("backbone")
    _common(p)
    p.set_defaults(func=_pretrain)

    p = sub.add_parser("log-mlflow", help="log every (entry, seed) of finished runs into MLflow (what Snakemake runs)",
                       description="Log every (entry, seed) of the finished runs of the list into MLflow (idempotent). "
                                   "The pipeline runs this; protoseg log-mlflow logs run folders of your own.")
    _common(p, tables=True)
    p.add_argument("--tracking-uri")
    p.add_argument("--artifact-root")
    p.add_argument("--claims", metavar="CSV",
                   help="also log each row of this claims table (protoseg claims) as a run of experiment <scale>/claims")
    p.add_argument("--out", help="write the per-run results (JSON) here")
    p.set_defaults(func=_log_mlflow)

    p = sub.add_parser("params", help="parameter counts of every model: the paper's construction and this scale's",
                       description="Count the learnable parameters of every entry's model, for the paper's construction and as run at this scale.")
    _common(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_params)

    p = sub.add_parser("dvc-yaml", help="write dvc.yaml from the experiment list (--check: fail if stale)",
                       description="Write dvc.yaml from the experiment list, the same commands as the Snakemake rules; --check fails when the file is stale.")
    _common(p)
    p.add_argument("--out", default="dvc.yaml")
    p.add_argument("--check", action="store_true")
    p.set_defaults(func=_dvc_yaml)

    t = subparsers.add_parser("tables", help="results/tables/<table>.{md,csv,tex} from the runs' metrics files",
                              description="Build the reproduced tables (Markdown, CSV, LaTeX) from the runs' metrics.json and run_info.json: "
                                          "paper value, mean, std and per-seed values, parameter check and provenance per row.")
    _common(t, tables=True)
    t.add_argument("--out", default="results/tables")
    t.add_argument("--params", help="parameter counts (protoseg experiments params --out ...)")
    t.set_defaults(func=_tables)

    cl = subparsers.add_parser(
        "claims", help="results/tables/claims.{md,csv}: every comparison of the paper, paired by seed",
        description="Each comparison the paper makes (ours vs parametric, the ablations' best settings, each "
                    "discrepancy switch) as a paired difference over seeds with a 95%% t-interval, beside the "
                    "paper's delta, and a verdict: reproduced, contradicted or inconclusive.")
    _common(cl)
    cl.add_argument("--out", default="results/tables")
    cl.set_defaults(func=_claims)

    c = subparsers.add_parser(
        "compare-results", help="your tables beside the committed reference, row by row, with a verdict",
        description="Print each row of your tables (--ours) beside the committed reference (--reference) "
                    "with the per-seed values and a verdict: same (within the measured cross-machine "
                    "tolerance), within seed spread, DIFFERS, outside seed spread, or missing.")
    c.add_argument("--reference", default="results/reference", help="reference results folder (default: %(default)s)")
    c.add_argument("--ours", default="results", help="your results folder (default: %(default)s)")
    c.add_argument("--tolerance", type=float, help="cross-machine tolerance in mIoU points (default: the measured one)")
    c.add_argument("--out", help="also write the comparison (Markdown) here")
    c.add_argument("--check", action="store_true", help="exit 2 when a row differs beyond the tolerance")
    c.set_defaults(func=_compare)

    f = subparsers.add_parser("figures", help="results/figures: Table 4 plot, Fig. 3 similarity maps, Fig. 5 embeddings",
                              description="Draw the Table 4 plot (mIoU and parameters against vocabulary size), the Fig. 3 "
                                          "prototype similarity maps and the Fig. 5 embedding plot from the runs.")
    _common(f)
    f.add_argument("--out", default="results/figures")
    f.add_argument("--params")
    f.add_argument("--which", nargs="+", default=["table4", "similarity", "embedding"],
                   choices=("table4", "similarity", "embedding", "diagnostics"))
    f.set_defaults(func=_figures)
