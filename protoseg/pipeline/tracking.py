"""MLflow logging of a plan's finished runs: one MLflow run per (table entry, seed).

A run shared by several entries (deduplicated) is logged once per entry, each time with that entry's
tracking section (experiment = ``<scale>/<table>``), through the engine's idempotent ``log_run``
(skips keys already complete; one lock around the whole batch: a single serial writer).
"""
from __future__ import annotations

import copy

from protoseg.engine.tracking import log_items, read_run_dir

from .experiments import Plan, tracking_section


def log_plan_runs(plan: Plan, keys, *, tracking_uri: str | None = None,
                  artifact_root: str | None = None) -> list[dict]:
    todo = []
    for key in keys:
        for seed in plan.seeds:
            run = read_run_dir(plan.run_dir(key, seed))
            for entry_id in plan.runs[key].entries:
                item = copy.copy(run)
                item["config"] = {**run["config"], "tracking": tracking_section(plan, plan.entries[entry_id])}
                item["config"]["tracking"]["run_key"] = key
                todo.append(item)
    return log_items(todo, tracking_uri=tracking_uri, artifact_root=artifact_root)
