# ProtoSeg reproduction pipeline. This file sets the config, includes the rule files
# (workflows/rules/) and names the targets; the experiments are configs/experiments.yaml.
#   snakemake -c2 tables                       # mini scale, embedded data, CPU (configs/pipeline.yaml)
#   snakemake --profile slurm tables --config scale=paper     # GPU cluster (slurm/config.yaml)
#   snakemake -c2 mini_smoke                   # one tiny run, its evaluation and its table
#   snakemake -c1 t2-segf-b4                   # one entry by its name (its run, every seed; names:
#                                              # protoseg experiments list; rules in workflows/rules/train.smk)
#   snakemake -c1 runs/mini/KEY/s0/metrics.json   # one run: run.yaml, then protoseg train --config run.yaml
#   snakemake -c2 compare                      # your results/ beside the committed results/reference
#   snakemake -c2 --config seeds=3 results_dir=results/reference   # regenerate the reference
# After every successful run the stages this run built are recorded in dvc.lock (dvc commit -f), so
# `dvc status` and `dvc repro` agree with Snakemake (protoseg/pipeline/dvc.py).
import time as _time

_STARTED = _time.time()  # record_lock records only the stages whose outputs were written after this


configfile: "configs/pipeline.yaml"


include: "workflows/rules/common.smk"
include: "workflows/rules/data.smk"
include: "workflows/rules/train.smk"
include: "workflows/rules/report.smk"


rule all:
    default_target: True
    input:
        rules.build_tables.output,
        rules.build_claims.output,
        rules.build_figures.output,
        rules.build_diagnostics_figure.output,
        rules.log_mlflow.output,
        rules.smoke_table.output,
        rules.compare_results.output,


rule tables:
    input:
        rules.build_tables.output,
        rules.build_claims.output,


rule figures:
    input:
        rules.build_figures.output,
        rules.build_diagnostics_figure.output,


rule mlflow:
    input:
        rules.log_mlflow.output,


rule mini_smoke:
    input:
        rules.smoke_table.output,


rule compare:
    input:
        rules.compare_results.output,
    run:
        print(Path(input[0]).read_text())


onsuccess:
    from protoseg.pipeline.dvc import record_lock

    record_lock("dvc.yaml", since=_STARTED)
