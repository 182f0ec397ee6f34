# Prepared datasets, at the roots of the scale file (configs/scales/<scale>.yaml `data.roots`, one
# <prefix>/<dataset> pattern: DATA_ROOT); commands: protoseg.pipeline.commands, as dvc.yaml's. Mini scale (`data.common.mini`): a miniature twin written in
# the official layout (MINI_RAW_DIR), then prepared by the same code as the real data. Paper scale:
# `protoseg prepare` on the official download named in `paper_sources` (a parameter, not an input
# file: the download is outside the workflow).
# Outputs are the prepared roots' meta.json (written last); no file inputs, so a root restored by
# `dvc pull` is never re-made.
import re as _re

_DATASETS = "|".join(_re.escape(d) for d in ROOTS)

if (SCALE_CFG["data"].get("common") or {}).get("mini"):

    rule make_mini:
        output:
            f"{DATA_ROOT}/meta.json",
        params:
            cmd=lambda wc: commands.make_mini(wc.dataset, wc.dataset, f"{MINI_RAW_DIR}/{wc.dataset}", ROOTS[wc.dataset]),
        wildcard_constraints:
            dataset=_DATASETS,
        log:
            f"logs/{SCALE}/make_mini/{{dataset}}.log",
        benchmark:
            f"logs/{SCALE}/benchmarks/make_mini/{{dataset}}.tsv"
        shell:
            "({params.cmd}) > {log:q} 2>&1"

else:

    rule prepare:
        output:
            f"{DATA_ROOT}/meta.json",
        params:
            cmd=lambda wc, threads: commands.prepare(wc.dataset, config["paper_sources"][wc.dataset],
                                                     ROOTS[wc.dataset], threads),
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
            "{params.cmd} > {log:q} 2>&1"


if PRE:

    rule make_mini_pretrain:
        """The pre-training twin (`protoseg make-mini pretrain`), prepared in the layout of the scale's
        `pretrain.dataset` (ADE20K's)."""
        output:
            f"{PRE['root']}/meta.json",
        params:
            cmd=lambda wc: commands.make_mini("pretrain", PRE["dataset"], f"{MINI_RAW_DIR}/pretrain", PRE["root"]),
        log:
            f"logs/{SCALE}/make_mini/pretrain.log",
        shell:
            "({params.cmd}) > {log:q} 2>&1"
