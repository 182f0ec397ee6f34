"""``protoseg log-mlflow``: log finished runs into MLflow, as a separate, idempotent step.

Training jobs never talk to MLflow; they write files (``config.yaml``, ``run_info.json``,
``train_log.jsonl``, ``val_log.jsonl``, ``metrics.json``, ``per_class_iou.csv``, ``confusion.png``).
This step reads them and logs one MLflow run per (``tracking.entry``, ``run.seed``) into the
experiment ``tracking.experiment`` (one per paper table):

- tags: ``table``, ``row``, ``column``, ``paper_value``, ``git_commit``, ``data_hash``, ``seed``,
  ``protoseg.key`` (``<entry>|seed=<seed>``, the idempotency key) and ``protoseg.complete``;
- params: the flattened resolved config; metrics: the final ``mIoU``/``aAcc``/``mAcc`` and
  ``delta_vs_paper`` (when a paper value is given), curves ``train/<term>`` and ``val/<metric>``
  by iteration;
- artifacts: every file listed above that exists.

Idempotency and concurrency: the whole check-then-log of one run holds an exclusive ``flock`` on a
lock file beside the store (sqlite cannot take concurrent writers); a run whose key already has a
complete MLflow run is skipped, an incomplete one (a crashed logger) is deleted and logged again.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
from pathlib import Path
from typing import Any, Iterator

import yaml

from .config import flatten_dict

REPO = Path(__file__).resolve().parents[2]
KEY_TAG = "protoseg.key"
COMPLETE_TAG = "protoseg.complete"
ARTIFACTS = ("config.yaml", "run_info.json", "metrics.json", "per_class_iou.csv", "confusion.png",
             "train_log.jsonl", "val_log.jsonl")


class TrackingError(RuntimeError):
    pass


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{REPO / 'mlruns' / 'mlflow.db'}"


def default_artifact_root() -> Path:
    return REPO / "mlruns" / "artifacts"


def _lock_path(uri: str, artifact_root: Path) -> Path:
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).with_suffix(".lock")
    return artifact_root / ".protoseg-mlflow.lock"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def read_run_dir(run_dir: str | Path) -> dict[str, Any]:
    """The files of a finished run; ``config.yaml`` and ``metrics.json`` are required."""
    run_dir = Path(run_dir)
    out: dict[str, Any] = {"dir": run_dir}
    for name in ("config.yaml", "metrics.json"):
        if not (run_dir / name).is_file():
            raise TrackingError(f"{run_dir / name}: missing; is {run_dir} a finished run?")
    try:
        out["config"] = yaml.safe_load((run_dir / "config.yaml").read_text())
        out["metrics"] = json.loads((run_dir / "metrics.json").read_text())
        info = run_dir / "run_info.json"
        out["info"] = json.loads(info.read_text()) if info.is_file() else {}
    except (ValueError, yaml.YAMLError) as err:
        raise TrackingError(f"{run_dir}: unreadable run file: {err}") from None
    for name in ("train_log.jsonl", "val_log.jsonl"):
        p = run_dir / name
        out[name] = [json.loads(x) for x in p.read_text().splitlines() if x.strip()] if p.is_file() else []
    return out


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def log_run(client, run: dict[str, Any], artifact_root: Path) -> dict[str, Any]:
    """Log one run dir (already read) with ``client``; the caller holds the store lock."""
    from mlflow.entities import Metric, Param, RunTag

    cfg, metrics, info = run["config"], run["metrics"], run["info"]
    tr, seed = cfg.get("tracking") or {}, cfg["run"]["seed"]
    exp_name = tr.get("experiment") or "protoseg"
    entry = tr.get("entry") or cfg["run"]["name"]
    key = f"{entry}|seed={seed}"
    exp = client.get_experiment_by_name(exp_name)
    exp_id = exp.experiment_id if exp else client.create_experiment(
        exp_name, artifact_location=(artifact_root / exp_name).resolve().as_uri())
    found = client.search_runs([exp_id], filter_string=f"tags.`{KEY_TAG}` = '{key}'", max_results=100)
    if any(r.data.tags.get(COMPLETE_TAG) == "true" for r in found):
        done = next(r for r in found if r.data.tags.get(COMPLETE_TAG) == "true")
        return {"run_dir": str(run["dir"]), "key": key, "run_id": done.info.run_id, "status": "skipped"}
    for r in found:  # a logger that died half-way: start that run over
        client.delete_run(r.info.run_id)

    tags = {KEY_TAG: key, "entry": entry, "seed": str(seed), "table": str(tr.get("table", "")),
            "row": str(tr.get("row", "")), "column": str(tr.get("column", "")),
            "paper_value": "" if tr.get("paper_value") is None else str(tr["paper_value"]),
            "git_commit": str(info.get("git_commit", "unknown")), "data_hash": str(info.get("data_hash", "unknown")),
            "run_dir": str(Path(run["dir"]).resolve())}
    mlrun = client.create_run(exp_id, run_name=f"{entry}-s{seed}", tags=tags)
    rid = mlrun.info.run_id
    params = [Param(k[:250], str(v)[:6000]) for k, v in sorted(flatten_dict(cfg).items())]
    for i in range(0, len(params), 100):
        client.log_batch(rid, params=params[i:i + 100])
    ts = 0
    points = [Metric(k, float(metrics[k]), ts, int(metrics.get("iteration", 0)))
              for k in ("mIoU", "aAcc", "mAcc") if _finite(metrics.get(k))]
    paper = tr.get("paper_value")
    metric_name = tr.get("metric") or "mIoU"
    if paper is not None and _finite(metrics.get(metric_name)):
        # the paper reports percentages; the metrics file fractions
        points.append(Metric("delta_vs_paper", 100.0 * float(metrics[metric_name]) - float(paper), ts,
                             int(metrics.get("iteration", 0))))
    for prefix, rows in (("train", run["train_log.jsonl"]), ("val", run["val_log.jsonl"])):
        for row in rows:
            for k, v in row.items():
                if k != "iter" and _finite(v):
                    points.append(Metric(f"{prefix}/{k}", float(v), ts, int(row["iter"])))
    for i in range(0, len(points), 1000):
        client.log_batch(rid, metrics=points[i:i + 1000])
    for name in ARTIFACTS:
        p = Path(run["dir"]) / name
        if p.is_file():
            client.log_artifact(rid, str(p))
    client.log_batch(rid, tags=[RunTag(COMPLETE_TAG, "true")])
    client.set_terminated(rid)
    return {"run_dir": str(run["dir"]), "key": key, "run_id": rid, "status": "logged"}


def log_items(items: list[dict], *, tracking_uri: str | None = None,
              artifact_root: str | Path | None = None) -> list[dict]:
    """Log runs already read by ``read_run_dir`` serially, under the store's lock (the only writer)."""
    from mlflow.tracking import MlflowClient

    uri = tracking_uri or default_tracking_uri()
    root = Path(artifact_root) if artifact_root else default_artifact_root()
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(_lock_path(uri, root)):
        client = MlflowClient(tracking_uri=uri)
        return [log_run(client, item, root) for item in items]


def log_runs(run_dirs, *, tracking_uri: str | None = None, artifact_root: str | Path | None = None) -> list[dict]:
    """Log each run dir (see the module docstring); returns one ``{run_dir, key, run_id, status}`` per
    run, status ``logged`` or ``skipped`` (already in the store)."""
    runs = [read_run_dir(d) for d in run_dirs]  # all readable before anything is logged
    return log_items(runs, tracking_uri=tracking_uri, artifact_root=artifact_root)
