# Helpers shared by the rule files (experiment list, paths). Filled in by the pipeline issue.
