# Training and evaluation of one run (a deduplicated experiment) and seed.
# Declared outputs are only the final checkpoint and metrics: Snakemake deletes the outputs of a
# failed job, while the periodic checkpoints (the resumable state) stay in the run folder, and a
# retried or requeued job continues from them (`--resume auto`).


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


if SCALE_CFG.get("pretrain"):  # scales with a pre-training stage (mini); the paper scale uses ImageNet weights

    rule pretrain:
        """One pre-training run per backbone on the scale's pre-training twin (the stand-in for ImageNet
        weights), exported as the backbone file every run of that backbone fine-tunes from."""
        input:
            data=ancient(f"{SCALE_CFG['pretrain']['root']}/meta.json"),
        output:
            f"{SCALE_CFG['pretrain']['dir']}/{{backbone}}.pt",
        log:
            f"logs/{SCALE}/pretrain/{{backbone}}.log",
        benchmark:
            f"logs/{SCALE}/benchmarks/pretrain/{{backbone}}.tsv"
        threads: 1
        shell:
            "OMP_NUM_THREADS={threads} {PS} experiments pretrain {wildcards.backbone:q} {COMMON_ARGS} > {log:q} 2>&1"


def pretrained_input(wc):
    """The backbone file a run fine-tunes from (none when the scale has no pre-training stage)."""
    path = PLAN.runs[wc.key].config["model"].get("pretrained")
    return [ancient(path)] if path and SCALE_CFG.get("pretrain") else []


rule train:
    input:
        data=lambda wc: ancient(data_marker(PLAN.runs[wc.key].dataset)),
        pretrained=pretrained_input,
    output:
        ckpt=f"{RUNS}/{{key}}/s{{seed}}/checkpoints/final.pt",
        metrics=f"{RUNS}/{{key}}/s{{seed}}/metrics.json",
    params:
        launcher=lambda wc: launcher(wc.key),
        threads_env=lambda wc, threads: f"OMP_NUM_THREADS={max(1, threads // max(1, int(res(wc.key, 'gpu') or 0)))}",
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
        "{params.threads_env} {params.launcher} experiments train {wildcards.key:q} --seed {wildcards.seed:q} "
        "{COMMON_ARGS} --resume auto --attempt {resources.attempt} >> {log:q} 2>&1"


rule evaluate:
    input:
        ckpt=ancient(f"{RUNS}/{{key}}/s{{seed}}/checkpoints/final.pt"),
    output:
        f"{RUNS}/{{key}}/s{{seed}}_eval/{{split}}/metrics.json",
    params:
        out=lambda wc: f"{RUNS}/{wc.key}/s{wc.seed}_eval/{wc.split}",
    log:
        f"logs/{SCALE}/evaluate/{{key}}_s{{seed}}_{{split}}.log",
    benchmark:
        f"logs/{SCALE}/benchmarks/evaluate/{{key}}_s{{seed}}_{{split}}.tsv"
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} {PS} evaluate --checkpoint {input.ckpt:q} --split {wildcards.split:q} "
        "--out {params.out:q} --quiet > {log:q} 2>&1"
