# Training and evaluation of one run (a deduplicated experiment) and seed.
# A run's engine config is a file, RUNS/<key>/run.yaml (rule run_config: `protoseg experiments config
# KEY --out`), the input of its train jobs, which run the public `protoseg train --config run.yaml
# --resume auto` (seed S: the overrides run.seed=S run.name=<key>/sS) - the command a user types.
# run.yaml is ancient() (dvc pull restores it without its modification time); the config's digest is a
# param instead, so a changed config re-trains.
# Declared outputs are only the final checkpoint and metrics: Snakemake deletes the outputs of a
# failed job, while the periodic checkpoints (the resumable state) stay in the run folder, and a
# retried or requeued job continues from them (`--resume auto`).

localrules: run_config


rule run_config:
    """The engine config of run `key` (all its seeds). `--out` leaves an unchanged file alone."""
    output:
        f"{RUNS}/{{key}}/run.yaml",
    params:
        config=lambda wc: run_config_digest(wc.key),
        cmd=lambda wc, output: commands.run_config(wc.key, CONFIG_ARGS, output[0]),
    log:
        f"logs/{SCALE}/run_config/{{key}}.log",
    shell:
        "{params.cmd} > {log:q} 2>&1"


def _train_resources():
    """SLURM resources per run (configs/scales/<scale>.yaml). ONE task owns all GPUs of the job:
    `gpu=N, tasks_per_gpu=0, nodes=1` (measured in docs/slurm.md: with `gpu` set, plugin 2.8.0 turns
    `tasks` into --ntasks-per-gpu, multiplying CPUs; tasks_per_gpu=0 switches that off, nodes=1 keeps
    the GPUs on one node for torchrun --standalone). CPU-only jobs get --ntasks=1."""
    out = {
        "tasks": 1,
        "tasks_per_gpu": 0,
        "nodes": 1,
        "cpus_per_task": lambda wc: res(wc.key, "cpus_per_task"),
        "mem_mb": lambda wc: res(wc.key, "mem_mb"),
        "runtime": lambda wc: res(wc.key, "runtime"),
        "attempt": lambda wc, attempt: attempt,  # Snakemake's retry counter, for --attempt
    }
    if any(int(r.resources.get("gpu") or 0) > 0 for r in PLAN.runs.values()):
        out["gpu"] = lambda wc: int(res(wc.key, "gpu") or 0)
    if any(r.resources.get("slurm_extra") for r in PLAN.runs.values()):
        out["slurm_extra"] = lambda wc: res(wc.key, "slurm_extra") or ""
    return out


if PRE:  # scales with a pre-training stage (mini); the paper scale uses ImageNet weights

    localrules: pretrain_config

    rule pretrain_config:
        """The engine config of the pre-training run of `backbone`."""
        output:
            f"{PRE['runs_dir']}/pretrain/{{backbone}}/run.yaml",
        params:
            config=lambda wc: pretrain_config_digest(wc.backbone),
            cmd=lambda wc, output: commands.pretrain_config(wc.backbone, CONFIG_ARGS, output[0]),
        wildcard_constraints:
            backbone="[a-z0-9_]+",
        log:
            f"logs/{SCALE}/run_config/pretrain_{{backbone}}.log",
        shell:
            "{params.cmd} > {log:q} 2>&1"

    rule pretrain:
        """One pre-training run per backbone on the scale's pre-training twin (the stand-in for ImageNet
        weights), exported as the backbone file every run of that backbone fine-tunes from."""
        input:
            config=ancient(f"{PRE['runs_dir']}/pretrain/{{backbone}}/run.yaml"),
            data=ancient(f"{PRE['root']}/meta.json"),
        output:
            f"{PRE['dir']}/{{backbone}}.pt",
        params:
            config=lambda wc: pretrain_config_digest(wc.backbone),
            cmd=lambda wc, input, output, threads: commands.pretrain(
                input.config, f"{PRE['runs_dir']}/pretrain/{wc.backbone}/checkpoints/final.pt", output[0], threads),
        wildcard_constraints:
            backbone="[a-z0-9_]+",
        log:
            f"logs/{SCALE}/pretrain/{{backbone}}.log",
        benchmark:
            f"logs/{SCALE}/benchmarks/pretrain/{{backbone}}.tsv"
        threads: 1
        shell:
            "({params.cmd}) > {log:q} 2>&1"


def pretrained_input(wc):
    """The backbone file a run fine-tunes from (none when the scale has no pre-training stage)."""
    path = PLAN.runs[wc.key].config["model"].get("pretrained")
    return [ancient(path)] if path and PRE else []


rule train:
    input:
        config=ancient(f"{RUNS}/{{key}}/run.yaml"),
        data=lambda wc: ancient(data_marker(PLAN.runs[wc.key].dataset)),
        pretrained=pretrained_input,
    output:
        ckpt=f"{RUNS}/{{key}}/s{{seed}}/checkpoints/final.pt",
        metrics=f"{RUNS}/{{key}}/s{{seed}}/metrics.json",
    params:
        config=lambda wc: run_config_digest(wc.key),
        cmd=lambda wc, threads, resources: train_command(wc.key, wc.seed, threads, resources.attempt),
    log:
        f"logs/{SCALE}/train/{{key}}_s{{seed}}.log",
    benchmark:
        f"logs/{SCALE}/benchmarks/train/{{key}}_s{{seed}}.tsv"
    threads: lambda wc: int(res(wc.key, "cpus_per_task") or 1)
    resources:
        **_train_resources(),
    # preemption (exit 75) or a killed job (node failure): the retry resumes from the newest periodic
    # checkpoint. Snakemake retries any failure; `--attempt` makes a retry after any other status
    # (a config error, NaN loss, disk full) stop at once with that status (docs/errors.md).
    retries: 3
    shell:
        "{params.cmd} >> {log:q} 2>&1"


rule evaluate:
    input:
        ckpt=ancient(f"{RUNS}/{{key}}/s{{seed}}/checkpoints/final.pt"),
    output:
        f"{RUNS}/{{key}}/s{{seed}}_eval/{{split}}/metrics.json",
    params:
        cmd=lambda wc, input, threads: commands.evaluate(
            input.ckpt, wc.split, f"{RUNS}/{wc.key}/s{wc.seed}_eval/{wc.split}", threads),
    log:
        f"logs/{SCALE}/evaluate/{{key}}_s{{seed}}_{{split}}.log",
    benchmark:
        f"logs/{SCALE}/benchmarks/evaluate/{{key}}_s{{seed}}_{{split}}.tsv"
    threads: 1
    shell:
        "{params.cmd} > {log:q} 2>&1"


# One target per entry of the list, named as the entry: `snakemake -c1 t2-segf-b4` trains the run of
# entry t2-segf-b4 (shared with every entry of an identical config), every seed. Names and their run
# keys: `protoseg experiments list`.
for _entry, _key in PLAN.entry_run.items():

    rule:
        name:
            _entry
        input:
            run_metrics([_key]),
        localrule: True
