# Prepared datasets, at the roots of the scale file (configs/scales/<scale>.yaml `data.roots`, one
# <prefix>/<dataset> pattern: DATA_ROOT). Mini scale (`data.common.mini`): a miniature twin written in
# the official layout (MINI_RAW_DIR), then prepared by the same code as the real data. Paper scale:
# `protoseg prepare` on the official download named in `paper_sources` (a parameter, not an input
# file: the download is outside the workflow).
# Outputs are the prepared roots' meta.json (written last); no file inputs, so a root restored by
# `dvc pull` is never re-made. Every value from the config reaches the shell quoted ({x:q}).
import re as _re

_DATASETS = "|".join(_re.escape(d) for d in ROOTS)

if (SCALE_CFG["data"].get("common") or {}).get("mini"):

    rule make_mini:
        output:
            f"{DATA_ROOT}/meta.json",
        params:
            raw=lambda wc: f"{MINI_RAW_DIR}/{wc.dataset}",
            root=lambda wc: ROOTS[wc.dataset],
        wildcard_constraints:
            dataset=_DATASETS,
        log:
            f"logs/{SCALE}/make_mini/{{dataset}}.log",
        benchmark:
            f"logs/{SCALE}/benchmarks/make_mini/{{dataset}}.tsv"
        shell:
            "(rm -rf {params.raw:q} && {PS} make-mini {wildcards.dataset:q} --dst {params.raw:q} && "
            "{PS} prepare {wildcards.dataset:q} --src {params.raw:q} --dst {params.root:q} --workers 1 --quiet) "
            "> {log:q} 2>&1"

else:

    rule prepare:
        output:
            f"{DATA_ROOT}/meta.json",
        params:
            src=lambda wc: config["paper_sources"][wc.dataset],
            root=lambda wc: ROOTS[wc.dataset],
        wildcard_constraints:
            dataset=_DATASETS,
        log:
            f"logs/{SCALE}/prepare/{{dataset}}.log",
        benchmark:
            f"logs/{SCALE}/benchmarks/prepare/{{dataset}}.tsv"
        threads: 8
        resources:
            cpus_per_task=8,
            mem_mb=32000,
            runtime=720,
        shell:
            "{PS} prepare {wildcards.dataset:q} --src {params.src:q} --dst {params.root:q} "
            "--workers {threads} --quiet > {log:q} 2>&1"


if PRE:

    rule make_mini_pretrain:
        """The pre-training twin (`protoseg make-mini pretrain`), prepared in the layout of the scale's
        `pretrain.dataset` (ADE20K's)."""
        output:
            f"{PRE['root']}/meta.json",
        params:
            raw=f"{MINI_RAW_DIR}/pretrain",
            root=PRE["root"],
            dataset=PRE["dataset"],
        log:
            f"logs/{SCALE}/make_mini/pretrain.log",
        shell:
            "(rm -rf {params.raw:q} && {PS} make-mini pretrain --dst {params.raw:q} && "
            "{PS} prepare {params.dataset:q} --src {params.raw:q} --dst {params.root:q} --workers 1 --quiet) "
            "> {log:q} 2>&1"
