"""Subcommands ``experiments``, ``tables``, ``compare-results`` and ``figures`` (registered in
``protoseg/cli.py``).

``protoseg experiments list|config|log-mlflow|params|dvc-yaml`` expose the experiment list to
Snakemake, DVC and users; ``protoseg tables`` and ``protoseg figures`` build ``results/``. The
Snakemake rules and DVC stages call exactly these commands; a run of the list is trained by the
public ``protoseg train --config <runs_dir>/<scale>/<key>/run.yaml`` (written by
``experiments config KEY --out``). Help texts are plain text (no RST).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from protoseg.cli import user_error


def _plan(args):
    from protoseg.config.pipeline import PipelineConfigError, parse_seeds

    from .experiments import ExperimentError, build_plan, load_pipeline_config

    overrides = {"scale": getattr(args, "scale", None), "runs_dir": getattr(args, "runs_dir", None)}
    if getattr(args, "seeds", None):
        try:
            overrides["seeds"] = parse_seeds(args.seeds, "--seeds")
        except PipelineConfigError as err:
            raise ExperimentError(str(err)) from None
    pcfg = load_pipeline_config(args.pipeline_config, overrides)
    return pcfg, build_plan(pcfg)


def _list(args) -> int:
    pcfg, plan = _plan(args)
    keys = plan.keys_for_tables(args.tables) if args.tables else list(plan.runs)
    if args.format == "entries":  # one line per run: its key, then the entries (Snakemake targets) it serves
        print("\n".join(f"{k}  {' '.join(plan.runs[k].entries)}" for k in keys))
    elif args.format == "keys":
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
    """Print (or write with ``--out``) the engine config of run KEY, or of the pre-training run of
    ``--pretrain BACKBONE``. ``--out`` writes atomically and leaves an unchanged file alone (its
    modification time too), so rewriting it never makes a workflow retrain."""
    from protoseg.atomic_io import write_bytes_atomic

    from .experiments import ExperimentError, pretrain_config

    _, plan = _plan(args)
    if (args.key is None) == (args.pretrain is None):
        raise ExperimentError("experiments config: give a run KEY (protoseg experiments list) or --pretrain BACKBONE")
    if args.pretrain is not None:
        cfg = pretrain_config(plan.scale_config, args.pretrain)
    elif args.key not in plan.runs:
        raise ExperimentError(f"no run {args.key!r} at scale {plan.scale} (protoseg experiments list)")
    else:
        cfg = plan.run_config(args.key, args.seed)
    text = yaml.safe_dump(cfg, sort_keys=False)
    if not args.out:
        print(text, end="")
        return 0
    out = Path(args.out)
    if not (out.is_file() and out.read_bytes() == text.encode()):
        out.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(out, text.encode())
    return 0


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
    from .experiments import SCALES_DIR
    from .params import parameter_table

    pcfg, plan = _plan(args)
    table = parameter_table(plan, scales_dir=pcfg.get("scales_dir", SCALES_DIR))
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
            return user_error(f"{args.out} is out of date; run `protoseg experiments dvc-yaml`")
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
    written = (build_figures(plan, out_dir=args.out, which=which, params_file=args.params,
                             ceiling_file=args.ceiling) if which else [])
    if "diagnostics" in args.which:
        from .diagnostics_figure import prototype_diagnostics_figure

        written.append(prototype_diagnostics_figure(plan, Path(args.out) / "prototype_diagnostics.png"))
    print(json.dumps({"written": [str(p) for p in written]}))
    return 0


def _compare(args) -> int:
    from .compare import POSSIBLE_BUG, compare, render, tolerance_text

    tolerance = args.tolerance  # None: the measured one of each row's head
    rows = compare(args.reference, args.ours, tolerance)  # CompareError: status 2 (protoseg.cli)
    text = render(rows, tolerance, args.reference, args.ours)
    print(text, end="")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    bad = [r for r in rows if r.verdict.startswith(POSSIBLE_BUG)]
    if args.check and bad:  # exit 2 like dvc-yaml --check: 1 is reserved for bugs (docs/errors.md)
        return user_error(f"{len(bad)} row(s) of {args.ours} outside the expected spread of {args.reference} "
                          f"(mean +- max(3 std, {tolerance_text(tolerance)})), possible bugs: "
                          f"{', '.join(f'{r.table} {r.row}' for r in bad[:3])}" + (", ..." if len(bad) > 3 else ""))
    return 0


def _common(p: argparse.ArgumentParser, *, tables: bool = False) -> None:
    p.add_argument("--pipeline-config", default=None, help="default: configs/pipeline.yaml")
    p.add_argument("--scale", choices=("mini", "paper"), help="override the config's scale")
    p.add_argument("--seeds", help="override the config's seeds, e.g. 0,1,2")
    p.add_argument("--runs-dir", help="override the config's runs_dir")
    if tables:
        p.add_argument("--tables", nargs="+", help="only the entries of these tables (keys of the list)")


def _add_experiments_parser(subparsers) -> None:
    ex = subparsers.add_parser("experiments", help="the experiment list: runs, their configs, MLflow, DVC",
                               description="Expose configs/experiments.yaml at a scale as deduplicated runs.")
    sub = ex.add_subparsers(dest="experiments_command", metavar="ACTION")

    p = sub.add_parser("list", help="the distinct runs (after dedupe) and the entries each serves",
                       description="List the distinct runs of the experiment list at a scale (entries with identical "
                                   "configs share one run): each run's key and its entries' names. Build an entry's "
                                   "run by its name: snakemake -c1 ENTRY (e.g. t2-segf-b4).")
    _common(p, tables=True)
    p.add_argument("--format", choices=("entries", "keys", "dirs", "json"), default="entries",
                   help="entries: KEY ENTRY... per line (default); keys: the keys only; dirs: the run folders; json")
    p.set_defaults(func=_list)

    p = sub.add_parser("config", help="print (or --out) the engine config of a run (what Snakemake and DVC "
                       "write as <runs_dir>/<scale>/<key>/run.yaml)",
                       description="Print (or write with --out) the engine config of run KEY and a seed, or of "
                                   "the pre-training run of --pretrain BACKBONE. Train it with protoseg train "
                                   "--config FILE --resume auto (seed S: add run.seed=S run.name=KEY/sS). --out "
                                   "leaves an unchanged file untouched.")
    _common(p)
    p.add_argument("key", nargs="?", help="a run key (protoseg experiments list)")
    p.add_argument("--pretrain", metavar="BACKBONE", help="the scale's pre-training run of BACKBONE instead")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out")
    p.set_defaults(func=_config)

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


def add_parser(subparsers) -> None:
    _add_experiments_parser(subparsers)
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
                    "with the per-seed values, the machine of both sides and a verdict: same (within the measured "
                    "cross-machine tolerance), within expected spread (reference mean +- max(3 std, "
                    "tolerance)), POSSIBLE BUG (outside it), or missing.")
    c.add_argument("--reference", default="results/reference", help="reference results folder (default: %(default)s)")
    c.add_argument("--ours", default="results", help="your results folder (default: %(default)s)")
    c.add_argument("--tolerance", type=float,
                   help="one cross-machine tolerance in mIoU points for every row (default: the measured one of "
                        "each row's head)")
    c.add_argument("--out", help="also write the comparison (Markdown) here")
    c.add_argument("--check", action="store_true", help="exit 2 when a row is a possible bug (outside the expected spread)")
    c.set_defaults(func=_compare)

    f = subparsers.add_parser("figures", help="results/figures: Table 4 plot, Fig. 3 similarity maps, Fig. 5 embeddings",
                              description="Draw the Table 4 plot (mIoU and parameters against vocabulary size), the Fig. 3 "
                                          "prototype similarity maps and the Fig. 5 embedding plot from the runs.")
    _common(f)
    f.add_argument("--out", default="results/figures")
    f.add_argument("--params")
    f.add_argument("--ceiling", help="the twins' Bayes ceilings (results/benchmarks/bayes_ceiling.json, "
                                     "benchmarks/bayes_ceiling.py): ADE20K-Full's ladder is drawn in the Table 4 panel")
    f.add_argument("--which", nargs="+", default=["table4", "similarity", "embedding"],
                   choices=("table4", "similarity", "embedding", "diagnostics"))
    f.set_defaults(func=_figures)
