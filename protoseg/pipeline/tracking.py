"""MLflow logging of a plan's finished runs: one MLflow run per (table entry, seed).

A run shared by several entries (deduplicated) is logged once per entry, each time with that entry's
tracking section (experiment = ``<scale>/<table>``, described by the table's title), through the
engine's ``log_run``: the same content is skipped, changed content (re-trained run, edited
experiment list or paper value) replaces the old MLflow run; one lock around the whole batch.
"""
from __future__ import annotations

import copy

from protoseg.engine.tracking import log_items, read_run_dir

from .experiments import Plan, tracking_section


def experiment_description(plan: Plan, table: str) -> str:
    """The ``mlflow.note.content`` of experiment ``<scale>/<table>``."""
    from .tables import _title

    title = _title(plan, "table5" if table.startswith("table5") else table)
    text = (f"{title} ({table}), scale `{plan.scale}`: one MLflow run per (table entry, seed), the same "
            "numbers as results/tables. mIoU, aAcc and mAcc in %; paper_mIoU in %; delta_vs_paper = "
            "ours - paper in percentage points. Tags: row, column, run_dir (the run folder), git_commit, "
            "data_hash. A re-trained run replaces the old MLflow run.")
    if plan.scale == "mini":
        text += (" Mini scale: synthetic miniature twins and a few CPU iterations; the numbers check the "
                 "pipeline, not the paper's values.")
    return text


def log_plan_runs(plan: Plan, keys, *, tracking_uri: str | None = None,
                  artifact_root: str | None = None) -> list[dict]:
    todo = []
    for key in keys:
        for seed in plan.seeds:
            run = read_run_dir(plan.run_dir(key, seed))
            for entry_id in plan.runs[key].entries:
                entry = plan.entries[entry_id]
                item = copy.copy(run)
                item["config"] = {**run["config"], "tracking": tracking_section(plan, entry)}
                item["config"]["tracking"]["run_key"] = key
                item["experiment_description"] = experiment_description(plan, entry.table)
                todo.append(item)
    return log_items(todo, tracking_uri=tracking_uri, artifact_root=artifact_root)
