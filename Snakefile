# ProtoSeg reproduction pipeline. The rules live in workflows/rules/; this file only sets the config,
# includes them and names the final targets. (Filled in by the pipeline issue.)
include: "workflows/rules/common.smk"


rule all:
    input: []
