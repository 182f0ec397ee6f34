"""MLflow logging of a plan's finished runs: one MLflow run per (table entry, seed).

A run shared by several entries (deduplicated) is logged once per entry, each time with that entry's
tracking section (experiment = ``<scale>/<table>``), through the engine's idempotent ``log_run``
(skips keys already complete; one lock around the whole batch: a single serial writer).
"""
from __future__ import annotations

import copy
from pathlib import Path

from protoseg.engine.tracking import (_lock_path, _locked, default_artifact_root, default_tracking_uri,
                                      log_run, read_run_dir)

from .experiments import Plan, tracking_section


def log_plan_runs(plan: Plan, keys, *, tracking_uri: str | None = None,
                  artifact_root: str | None = None) -> list[dict]:
    from mlflow.tracking import MlflowClient

    uri = tracking_uri or default_tracking_uri()
    root = Path(artifact_root) if artifact_root else default_artifact_root()
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    todo = []
    for key in keys:
        for seed in plan.seeds:
            run = read_run_dir(plan.run_dir(key, seed))
            for entry_id in plan.runs[key].entries:
                item = copy.copy(run)
                item["config"] = {**run["config"], "tracking": tracking_section(plan, plan.entries[entry_id])}
                item["config"]["tracking"]["run_key"] = key
                todo.append(item)
    results = []
    with _locked(_lock_path(uri, root)):
        client = MlflowClient(tracking_uri=uri)
        for item in todo:
            results.append(log_run(client, item, root))
    return results
