# ProtoSeg reproduction pipeline. This file sets the config, includes the rule files
# (workflows/rules/) and names the targets; the experiments are configs/experiments.yaml.
#   snakemake -c2 tables                       # mini scale, embedded data, CPU (configs/pipeline.yaml)
#   snakemake --profile slurm tables --config scale=paper     # GPU cluster (slurm/config.yaml)
#   snakemake -c2 mini_smoke                   # one tiny run, its evaluation and its table
configfile: "configs/pipeline.yaml"


include: "workflows/rules/common.smk"
include: "workflows/rules/data.smk"
include: "workflows/rules/train.smk"
include: "workflows/rules/report.smk"


rule all:
    default_target: True
    input:
        rules.build_tables.output,
        rules.build_figures.output,
        rules.log_mlflow.output,


rule tables:
    input:
        rules.build_tables.output,


rule figures:
    input:
        rules.build_figures.output,


rule mlflow:
    input:
        rules.log_mlflow.output,


rule mini_smoke:
    input:
        rules.smoke_table.output,
