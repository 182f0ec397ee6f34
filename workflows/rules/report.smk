# Parameter counts, MLflow logging, tables and figures. Inputs restored by `dvc pull` are ancient():
# their fresh modification times must not trigger re-runs (a producing job that does run still
# re-runs its consumers). Commands: protoseg.pipeline.commands (config values quoted there).
# PLAN_DIGEST (a param): an edit of the experiment list or the paper values (tracking sections, run
# keys) re-runs the tables and the MLflow logging, so both follow it and agree.
# Console: the rules reading many run folders carry a one-line `message:` (Snakemake then prints it
# instead of the job's input list); their commands name no run folder (they read the plan). The
# `Reason:` line still lists the inputs a job just made; `snakemake --quiet reason` hides it.
from protoseg.pipeline.experiments import tracking_section as _tracking_section  # noqa: E402

PLAN_DIGEST = sha256_json({e: [PLAN.entry_run[e], _tracking_section(PLAN, PLAN.entries[e])]
                           for e in PLAN.entries})[:16]


rule params:
    output:
        f"{RESULTS}/params_{SCALE}.json",
    params:
        cmd=lambda wc, output: commands.params(COMMON_ARGS, output[0]),
    log:
        f"logs/{SCALE}/params.log",
    benchmark:
        f"logs/{SCALE}/benchmarks/params.tsv"
    shell:
        "{params.cmd} > {log:q} 2>&1"


rule log_mlflow:
    """One serial writer: every (entry, seed) of the finished runs, and every row of the claims table,
    into MLflow (idempotent; a changed row replaces its MLflow run)."""
    input:
        metrics=ancient(run_metrics(list(PLAN.runs))),
        claims=ancient(f"{RESULTS}/tables/claims.csv"),
    message:
        f"MLflow: {len(PLAN.runs) * len(SEEDS)} run folder(s) and the claims table into " "{params.uri} (log: {log})"
    output:
        f"logs/{SCALE}/mlflow_logged.json",
    params:
        uri=config["mlflow"]["tracking_uri"],
        plan=PLAN_DIGEST,
        cmd=lambda wc, input, output: commands.log_mlflow(COMMON_ARGS, config["mlflow"]["tracking_uri"],
                                                          config["mlflow"]["artifact_root"], input.claims, output[0]),
    log:
        f"logs/{SCALE}/log_mlflow.log",
    benchmark:
        f"logs/{SCALE}/benchmarks/log_mlflow.tsv"
    shell:
        "{params.cmd} > {log:q} 2>&1"


def table_outputs(names):
    return [f"{RESULTS}/tables/{n}.{ext}" for n in table_files(names) for ext in ("md", "csv", "tex")]


def table_files(names):
    """Output file stems: Table 5's four parts go into one table5 file."""
    return list(dict.fromkeys("table5" if n.startswith("table5") else n for n in names))


rule build_tables:
    input:
        metrics=ancient(run_metrics(table_keys(config["tables"]))),
        params=ancient(f"{RESULTS}/params_{SCALE}.json"),
    message:
        f"Tables: {len(table_files(config['tables']))} table(s) from {len(table_keys(config['tables'])) * len(SEEDS)} run folder(s) " "into {params.out} (log: {log})"
    output:
        table_outputs(config["tables"]),
    params:
        out=f"{RESULTS}/tables",
        plan=PLAN_DIGEST,
        cmd=lambda wc, input: commands.tables(COMMON_ARGS, config["tables"], f"{RESULTS}/tables", input.params),
    log:
        f"logs/{SCALE}/tables.log",
    benchmark:
        f"logs/{SCALE}/benchmarks/tables.tsv"
    shell:
        "{params.cmd} > {log:q} 2>&1"


rule build_claims:
    input:
        metrics=ancient(run_metrics(table_keys(config["tables"]))),
    message:
        f"Claims table from {len(table_keys(config['tables'])) * len(SEEDS)} run folder(s): " "{output[0]}, {output[1]} (log: {log})"
    output:
        f"{RESULTS}/tables/claims.md",
        f"{RESULTS}/tables/claims.csv",
    params:
        plan=PLAN_DIGEST,
        cmd=lambda wc: commands.claims(COMMON_ARGS, f"{RESULTS}/tables"),
    log:
        f"logs/{SCALE}/claims.log",
    shell:
        "{params.cmd} > {log:q} 2>&1"


rule build_diagnostics_figure:
    input:
        metrics=ancient(run_metrics(table_keys(["table5b", "discrepancy"]))),
    message:
        f"Prototype diagnostics figure from {len(table_keys(['table5b', 'discrepancy'])) * len(SEEDS)} run folder(s): " "{output} (log: {log})"
    output:
        f"{RESULTS}/figures/prototype_diagnostics.png",
    params:
        plan=PLAN_DIGEST,
        cmd=lambda wc: commands.diagnostics_figure(COMMON_ARGS, f"{RESULTS}/figures"),
    log:
        f"logs/{SCALE}/diagnostics_figure.log",
    shell:
        "{params.cmd} > {log:q} 2>&1"


# the twins' Bayes ceilings (benchmarks/bayes_ceiling.py), drawn in the Table 4 panel at the mini scale
# (drawn when the committed file is there: a copy of the workflow without results/benchmarks draws none)
CEILING_FILE = [f for f in ["results/benchmarks/bayes_ceiling.json"]
                if (SCALE_CFG["data"].get("common") or {}).get("mini") and os.path.isfile(f)]


rule build_figures:
    input:
        metrics=ancient(run_metrics(table_keys(["table2", "table4"]))),
        ckpt=ancient(f"{RUNS}/{PLAN.entry_run['t2-ours-b4']}/s{SEEDS[0]}/checkpoints/final.pt"),
        params=ancient(f"{RESULTS}/params_{SCALE}.json"),
        ceiling=CEILING_FILE,
    message:
        f"Figures (Table 4, Fig. 3, Fig. 5) from {len(table_keys(['table2', 'table4'])) * len(SEEDS)} run folder(s) " "into {params.out} (log: {log})"
    output:
        f"{RESULTS}/figures/table4_miou_params.png",
        f"{RESULTS}/figures/fig3_similarity.png",
        f"{RESULTS}/figures/fig5_embedding.png",
    params:
        out=f"{RESULTS}/figures",
        cmd=lambda wc, input: commands.figures(COMMON_ARGS, input.params, list(input.ceiling), f"{RESULTS}/figures"),
    log:
        f"logs/{SCALE}/figures.log",
    benchmark:
        f"logs/{SCALE}/benchmarks/figures.tsv"
    shell:
        "{params.cmd} > {log:q} 2>&1"


rule compare_results:
    """Your tables beside the committed reference (protoseg compare-results), row by row."""
    input:
        [f"{RESULTS}/tables/{n}.csv" for n in table_files(config["tables"])],
    output:
        f"{RESULTS}/compare.md",
    params:
        cmd=lambda wc, output: commands.compare(REFERENCE, RESULTS, output[0]),
    log:
        f"logs/{SCALE}/compare.log",
    shell:
        "{params.cmd} > {log:q} 2>&1"


# --- the smoke target: one tiny run, its evaluation and its table (CI and the SLURM test) ---
SMOKE_KEYS = table_keys(["smoke"])

rule smoke_table:
    input:
        metrics=ancient(run_metrics(SMOKE_KEYS, SEEDS[:1])),
        evals=ancient([f"{RUNS}/{k}/s{SEEDS[0]}_eval/val/metrics.json" for k in SMOKE_KEYS]),
    output:
        f"{RESULTS}/smoke/smoke.md",
        f"{RESULTS}/smoke/smoke.csv",
        f"{RESULTS}/smoke/smoke.tex",
    params:
        cmd=lambda wc: commands.tables(commands.run_args(SCALE, config["runs_dir"], SEEDS[:1]), ["smoke"],
                                       f"{RESULTS}/smoke"),
    log:
        f"logs/{SCALE}/smoke_table.log",
    benchmark:
        f"logs/{SCALE}/benchmarks/smoke_table.tsv"
    shell:
        "{params.cmd} > {log:q} 2>&1"
