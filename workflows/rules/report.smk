# Parameter counts, MLflow logging, tables and figures. Inputs restored by `dvc pull` are ancient():
# their fresh modification times must not trigger re-runs (a producing job that does run still
# re-runs its consumers). Every value from the config reaches the shell quoted ({x:q}, COMMON_ARGS).
# PLAN_DIGEST (a param): an edit of the experiment list or the paper values (tracking sections, run
# keys) re-runs the tables and the MLflow logging, so both follow it and agree.
# Console: the rules reading many run folders carry a one-line `message:` (Snakemake then prints it
# instead of the job's input list); their commands name no run folder (they read the plan). The
# `Reason:` line still lists the inputs a job just made; `snakemake --quiet reason` hides it.
import hashlib as _hashlib
import json as _json

from protoseg.pipeline.experiments import tracking_section as _tracking_section  # noqa: E402

PLAN_DIGEST = _hashlib.sha256(_json.dumps(
    {e: [PLAN.entry_run[e], _tracking_section(PLAN, PLAN.entries[e])] for e in PLAN.entries},
    sort_keys=True, default=str).encode()).hexdigest()[:16]


rule params:
    output:
        f"{RESULTS}/params_{SCALE}.json",
    log:
        f"logs/{SCALE}/params.log",
    benchmark:
        f"logs/{SCALE}/benchmarks/params.tsv"
    shell:
        "OMP_NUM_THREADS=1 {PS} experiments params {COMMON_ARGS} --out {output:q} > {log:q} 2>&1"


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
        root=config["mlflow"]["artifact_root"],
        plan=PLAN_DIGEST,
    log:
        f"logs/{SCALE}/log_mlflow.log",
    benchmark:
        f"logs/{SCALE}/benchmarks/log_mlflow.tsv"
    shell:
        "{PS} experiments log-mlflow {COMMON_ARGS} --tracking-uri {params.uri:q} --artifact-root {params.root:q} "
        "--claims {input.claims:q} --out {output:q} > {log:q} 2>&1"


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
        tables=config["tables"],
        out=f"{RESULTS}/tables",
        plan=PLAN_DIGEST,
    log:
        f"logs/{SCALE}/tables.log",
    benchmark:
        f"logs/{SCALE}/benchmarks/tables.tsv"
    shell:
        "{PS} tables {COMMON_ARGS} --tables {params.tables:q} --params {input.params:q} "
        "--out {params.out:q} > {log:q} 2>&1"


rule build_claims:
    input:
        metrics=ancient(run_metrics(table_keys(config["tables"]))),
    message:
        f"Claims table from {len(table_keys(config['tables'])) * len(SEEDS)} run folder(s): " "{output[0]}, {output[1]} (log: {log})"
    output:
        f"{RESULTS}/tables/claims.md",
        f"{RESULTS}/tables/claims.csv",
    params:
        out=f"{RESULTS}/tables",
        plan=PLAN_DIGEST,
    log:
        f"logs/{SCALE}/claims.log",
    shell:
        "{PS} claims {COMMON_ARGS} --out {params.out:q} > {log:q} 2>&1"


rule build_diagnostics_figure:
    input:
        metrics=ancient(run_metrics(table_keys(["table5b", "discrepancy"]))),
    message:
        f"Prototype diagnostics figure from {len(table_keys(['table5b', 'discrepancy'])) * len(SEEDS)} run folder(s): " "{output} (log: {log})"
    output:
        f"{RESULTS}/figures/prototype_diagnostics.png",
    params:
        out=f"{RESULTS}/figures",
        plan=PLAN_DIGEST,
    log:
        f"logs/{SCALE}/diagnostics_figure.log",
    shell:
        "{PS} figures {COMMON_ARGS} --which diagnostics --out {params.out:q} > {log:q} 2>&1"


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
        ceiling=lambda wc, input: shlex.join(["--ceiling", *input.ceiling]) if input.ceiling else "",
    log:
        f"logs/{SCALE}/figures.log",
    benchmark:
        f"logs/{SCALE}/benchmarks/figures.tsv"
    shell:
        "OMP_NUM_THREADS=1 {PS} figures {COMMON_ARGS} --params {input.params:q} {params.ceiling} "
        "--out {params.out:q} > {log:q} 2>&1"


rule compare_results:
    """Your tables beside the committed reference (protoseg compare-results), row by row."""
    input:
        [f"{RESULTS}/tables/{n}.csv" for n in table_files(config["tables"])],
    output:
        f"{RESULTS}/compare.md",
    log:
        f"logs/{SCALE}/compare.log",
    shell:
        "{PS} compare-results --reference {REFERENCE:q} --ours {RESULTS:q} --out {output:q} > {log:q} 2>&1"


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
        seed=SEEDS[0],
        runs_dir=config["runs_dir"],
        out=f"{RESULTS}/smoke",
    log:
        f"logs/{SCALE}/smoke_table.log",
    benchmark:
        f"logs/{SCALE}/benchmarks/smoke_table.tsv"
    shell:
        "{PS} tables --scale {SCALE:q} --seeds {params.seed} --runs-dir {params.runs_dir:q} --tables smoke "
        "--out {params.out:q} > {log:q} 2>&1"
