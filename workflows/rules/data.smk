# Prepared datasets. Mini scale: a miniature twin written in the official layout, then prepared by
# the same code as the real data. Paper scale: `protoseg prepare` on the official download named in
# `paper_sources` (a parameter, not an input file: the download is outside the workflow).
# Outputs are the prepared roots' meta.json (written last); no file inputs, so a root restored by
# `dvc pull` is never re-made. Every value from the config reaches the shell quoted ({x:q}).

rule make_mini:
    output:
        "data/mini/prepared/{dataset}/meta.json",
    log:
        "logs/mini/make_mini/{dataset}.log",
    benchmark:
        "logs/mini/benchmarks/make_mini/{dataset}.tsv"
    shell:
        "(rm -rf data/mini/raw/{wildcards.dataset:q} && "
        "{PS} make-mini {wildcards.dataset:q} --dst data/mini/raw/{wildcards.dataset:q} && "
        "{PS} prepare {wildcards.dataset:q} --src data/mini/raw/{wildcards.dataset:q} "
        "--dst data/mini/prepared/{wildcards.dataset:q} --workers 1 --quiet) > {log:q} 2>&1"


rule make_mini_pretrain:
    """The pre-training twin (`protoseg make-mini pretrain`), prepared as the ADE20K layout it uses."""
    output:
        "data/mini/prepared/pretrain/meta.json",
    log:
        "logs/mini/make_mini/pretrain.log",
    shell:
        "(rm -rf data/mini/raw/pretrain && {PS} make-mini pretrain --dst data/mini/raw/pretrain && "
        "{PS} prepare ade20k --src data/mini/raw/pretrain --dst data/mini/prepared/pretrain "
        "--workers 1 --quiet) > {log:q} 2>&1"


rule prepare:
    output:
        "data/prepared/{dataset}/meta.json",
    params:
        src=lambda wc: config["paper_sources"][wc.dataset],
    log:
        "logs/paper/prepare/{dataset}.log",
    benchmark:
        "logs/paper/benchmarks/prepare/{dataset}.tsv"
    threads: 8
    resources:
        cpus_per_task=8,
        mem_mb=32000,
        runtime=720,
    shell:
        "{PS} prepare {wildcards.dataset:q} --src {params.src:q} --dst data/prepared/{wildcards.dataset:q} "
        "--workers {threads} --quiet > {log:q} 2>&1"


ruleorder: make_mini_pretrain > make_mini
