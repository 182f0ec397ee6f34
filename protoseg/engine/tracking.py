"""``protoseg log-mlflow``: log finished runs into MLflow, as a separate step that follows the files.

Training jobs never talk to MLflow; they write files (``config.yaml``, ``run_info.json``,
``train_log.jsonl``, ``val_log.jsonl``, ``metrics.json``, ``per_class_iou.csv``, ``confusion.png``).
This step reads them and logs one MLflow run per (``tracking.entry``, ``run.seed``) into the
experiment ``tracking.experiment`` (one per paper table; its description, the ``mlflow.note.content``
tag, says what the table is and in which units):

- tags: ``table``, ``row``, ``column``, ``paper_value``, ``git_commit``, ``data_hash`` (every distinct
  one of the run's attempts, comma-separated, if a resume changed them), ``seed``,
  ``run_dir`` (relative to the repository when inside it), ``protoseg.key`` (``<entry>|seed=<seed>``),
  ``protoseg.content`` (sha256 of ``metrics.json`` and the resolved config) and ``protoseg.complete``;
- params: the flattened resolved config;
- metrics, in the units of the tables: ``mIoU``/``aAcc``/``mAcc`` in %, ``paper_<metric>`` (%) and
  ``delta_vs_paper`` (percentage points) when a paper value is given; curves ``train/<term>`` and
  ``val/<metric>`` (%) by iteration;
- start and end time: the training's (first attempt's start in ``run_info.json``, its ``finished``
  time or else the time ``metrics.json`` was written), not the logging's;
- artifacts: every file listed above that exists.

The MLflow run is bound to its content. Per key, under an exclusive ``flock`` on a lock file beside
the store (sqlite cannot take concurrent writers):

- a complete run with the same content hash: ``skipped`` (logging is idempotent);
- a complete run with another content hash (the entry was re-trained, or its config or paper value
  changed): the new run is logged and the old one is REPLACED: tagged ``protoseg.superseded_by`` and
  deleted (MLflow's soft delete: hidden from the UI and from searches, restorable with
  ``mlflow runs restore``, removed for good by ``mlflow gc``); status ``replaced``;
- an incomplete run (a logger that died half-way): deleted and logged again.

So the tables (read from ``metrics.json``) and MLflow always show the same numbers.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterator

import yaml

from protoseg.config import flatten_dict
from protoseg.config.tracking import TRACKING_NAMES, tracking_name_problem

REPO = Path(__file__).resolve().parents[2]
KEY_TAG = "protoseg.key"
COMPLETE_TAG = "protoseg.complete"
CONTENT_TAG = "protoseg.content"
SUPERSEDED_TAG = "protoseg.superseded_by"
PERCENT_METRICS = ("mIoU", "aAcc", "mAcc")
DIAGNOSTIC_METRICS = ("proto_mean_pairwise_cos", "proto_usage_entropy", "proto_dead_fraction")
ARTIFACTS = ("config.yaml", "run_info.json", "metrics.json", "per_class_iou.csv", "confusion.png",
             "train_log.jsonl", "val_log.jsonl")


class TrackingError(RuntimeError):
    pass


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{REPO / 'mlruns' / 'mlflow.db'}"


def default_artifact_root() -> Path:
    return REPO / "mlruns" / "artifacts"


def lock_path(uri: str, artifact_root: Path) -> Path:
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).with_suffix(".lock")
    return artifact_root / ".protoseg-mlflow.lock"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
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
        out["metrics_bytes"] = (run_dir / "metrics.json").read_bytes()
        out["metrics_mtime"] = (run_dir / "metrics.json").stat().st_mtime
        out["config"] = yaml.safe_load((run_dir / "config.yaml").read_text())
        out["metrics"] = json.loads(out["metrics_bytes"])
        info = run_dir / "run_info.json"
        out["info"] = json.loads(info.read_text()) if info.is_file() else {}
        for name in ("train_log.jsonl", "val_log.jsonl"):
            p = run_dir / name
            out[name] = ([json.loads(x) for x in p.read_text().splitlines() if x.strip()]
                         if p.is_file() else [])
    except (ValueError, yaml.YAMLError, UnicodeDecodeError) as err:
        raise TrackingError(f"{run_dir}: unreadable run file: {err}") from None
    for name, kind in (("config", dict), ("metrics", dict), ("info", dict)):
        if not isinstance(out[name], kind):
            raise TrackingError(f"{run_dir}: {name} file is not a mapping ({type(out[name]).__name__})")
    tr = out["config"].get("tracking") or {}
    if not isinstance(tr, dict):
        raise TrackingError(f"{run_dir / 'config.yaml'}: tracking is not a mapping ({type(tr).__name__})")
    for key in TRACKING_NAMES:
        problem = None if tr.get(key) is None else tracking_name_problem(tr[key])
        if problem:
            raise TrackingError(f"{run_dir / 'config.yaml'}: tracking.{key}={tr[key]!r:.80}: expected {problem}")
    if not isinstance((out["config"].get("run") or {}).get("seed"), int):
        raise TrackingError(f"{run_dir / 'config.yaml'}: run.seed missing; expected the resolved config "
                            "that `protoseg train` writes")
    return out


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _joined(info: dict[str, Any], key: str) -> str:
    """``run_info.json``'s ``key`` (the first attempt's); every distinct one, comma-separated, when
    the attempts of a resumed run differ (``git_commits``/``data_hashes``)."""
    many = info.get(f"{key}s") if key == "git_commit" else info.get("data_hashes")
    if isinstance(many, list) and len(many) > 1:
        return ",".join(str(x) for x in many)
    return str(info.get(key, "unknown"))


def content_hash(run: dict[str, Any]) -> str:
    """sha256 of ``metrics.json``'s bytes and the resolved config (canonical JSON, tracking included)."""
    h = hashlib.sha256(run["metrics_bytes"])
    h.update(json.dumps(run["config"], sort_keys=True, default=str).encode())
    return h.hexdigest()


def _ms(value: Any) -> int | None:
    """An ISO time (``run_info.json``; no zone = local time) or a POSIX time as epoch milliseconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value * 1000)
    if isinstance(value, str) and value:
        try:
            return int(datetime.datetime.fromisoformat(value).timestamp() * 1000)
        except ValueError:
            return None
    return None


def run_times(run: dict[str, Any]) -> tuple[int | None, int | None]:
    """(start, end) of the training in epoch ms: the first attempt's start; the last attempt's
    ``finished`` or else the time ``metrics.json`` was written."""
    info = run["info"]
    attempts = info.get("attempts") if isinstance(info.get("attempts"), list) else []
    start = _ms(attempts[0].get("started")) if attempts and isinstance(attempts[0], dict) else None
    if start is None:
        start = _ms(info.get("started"))
    end = _ms(info.get("finished"))
    if end is None and run.get("metrics_mtime") is not None:
        end = _ms(run["metrics_mtime"])
    if start is not None and end is not None and end < start:
        end = start
    return start, end


def repo_relative(path: str | Path) -> str:
    """``path`` relative to the repository if inside it, else absolute."""
    p = Path(path).resolve()
    try:
        return p.relative_to(REPO).as_posix()
    except ValueError:
        return str(p)


def describe_experiment(tr: dict[str, Any]) -> str:
    """The experiment's description (``mlflow.note.content``) when the caller gives none."""
    table = tr.get("table") or tr.get("experiment") or "runs"
    return (f"Table {table} of the ProtoSeg reproduction: one run per (entry, seed). "
            f"Metrics in the tables' units: mIoU, aAcc and mAcc in %, paper_{tr.get('metric') or 'mIoU'} "
            "in %, delta_vs_paper = ours - paper in percentage points. Logged from the run folders "
            "(tag run_dir) by `protoseg log-mlflow`; a re-trained run replaces the old one.")


SAFE_DIR = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def artifact_dir(artifact_root: Path, name: str) -> Path:
    """The artifact folder of experiment ``name``: ``<root>/<name>`` when each ``/``-separated part of
    the name is a plain file name (``mini/table1``), else ``<root>/experiment-<sha256[:16]>``: a
    user's name never becomes a path outside the root, an over-long file name or a shell word."""
    parts = name.split("/")
    if all(SAFE_DIR.fullmatch(p) and p not in (".", "..") for p in parts):
        return artifact_root.joinpath(*parts)
    return artifact_root / f"experiment-{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def ensure_experiment(client, name: str, artifact_root: Path, note: str) -> str:
    """The id of experiment ``name`` (created if absent, looked up by value, not by a filter
    string), with its description tag ``note``."""
    exp = client.get_experiment_by_name(name)
    exp_id = exp.experiment_id if exp else client.create_experiment(
        name, artifact_location=artifact_dir(artifact_root, name).resolve().as_uri())
    if exp is None or exp.tags.get("mlflow.note.content") != note:
        client.set_experiment_tag(exp_id, "mlflow.note.content", note)
    return exp_id


def runs_with_tag(client, exp_id: str, tag: str, value: str | None = None) -> list:
    """The live runs of experiment ``exp_id`` (every page), those whose tag ``tag`` equals ``value``
    when given. Matched in Python: a user's name (quotes, backslashes, ``=``, any letters) is data,
    never MLflow filter-string syntax."""
    out, token = [], None
    while True:
        page = client.search_runs([exp_id], max_results=1000, page_token=token)
        out += [r for r in page if value is None or r.data.tags.get(tag) == value]
        token = page.token
        if not token:
            return out


def log_run(client, run: dict[str, Any], artifact_root: Path) -> dict[str, Any]:
    """Log one run dir (already read) with ``client``; the caller holds the store lock."""
    from mlflow.entities import Param, RunTag

    cfg, info = run["config"], run["info"]
    tr, seed = cfg.get("tracking") or {}, cfg["run"]["seed"]
    exp_name = tr.get("experiment") or "protoseg"
    entry = tr.get("entry") or cfg["run"]["name"]
    key = f"{entry}|seed={seed}"
    content = content_hash(run)
    exp_id = ensure_experiment(client, exp_name, artifact_root,
                               run.get("experiment_description") or describe_experiment(tr))
    out = {"run_dir": str(run["dir"]), "key": key}
    found = runs_with_tag(client, exp_id, KEY_TAG, key)
    complete = [r for r in found if r.data.tags.get(COMPLETE_TAG) == "true"]
    same = [r for r in complete if r.data.tags.get(CONTENT_TAG) == content]
    if same:
        return {**out, "run_id": same[0].info.run_id, "status": "skipped"}

    tags = {KEY_TAG: key, CONTENT_TAG: content, "entry": entry, "seed": str(seed),
            "table": str(tr.get("table", "")), "row": str(tr.get("row", "")),
            "column": str(tr.get("column", "")),
            "paper_value": "" if tr.get("paper_value") is None else str(tr["paper_value"]),
            "git_commit": _joined(info, "git_commit"), "data_hash": _joined(info, "data_hash"),
            "run_dir": repo_relative(run["dir"])}
    start_ms, end_ms = run_times(run)
    suffix = f"-s{seed}"  # the run name within MLflow's 250 characters; tag entry holds the whole name
    mlrun = client.create_run(exp_id, run_name=entry[:250 - len(suffix)] + suffix, tags=tags, start_time=start_ms)
    rid = mlrun.info.run_id
    params = [Param(k[:250], str(v)[:6000]) for k, v in sorted(flatten_dict(cfg).items())]
    for i in range(0, len(params), 100):
        client.log_batch(rid, params=params[i:i + 100])
    points = metric_points(run, tr, end_ms or 0)
    for i in range(0, len(points), 1000):
        client.log_batch(rid, metrics=points[i:i + 1000])
    for name in ARTIFACTS:
        p = Path(run["dir"]) / name
        if p.is_file():
            client.log_artifact(rid, str(p))
    client.log_batch(rid, tags=[RunTag(COMPLETE_TAG, "true")])
    client.set_terminated(rid, end_time=end_ms)
    return retire_superseded(client, found, rid, out)


def metric_points(run: dict[str, Any], tr: dict[str, Any], ts: int) -> list:
    """The MLflow metrics of a run (already read): the final metrics in the tables' units, the
    prototype diagnostics, the paper value and the delta to it, and every training and validation
    log row at its iteration; ``ts`` the timestamp of them all."""
    from mlflow.entities import Metric

    metrics = run["metrics"]
    step = int(metrics.get("iteration", 0) or 0)
    # the tables' units: metrics.json holds fractions, the tables and the paper percentages
    points = [Metric(k, 100.0 * float(metrics[k]), ts, step)
              for k in PERCENT_METRICS if _finite(metrics.get(k))]
    diag = metrics.get("prototype_diagnostics") or {}  # prototype head: collapse diagnostics
    points += [Metric(k, float(diag[k]), ts, step) for k in DIAGNOSTIC_METRICS if _finite(diag.get(k))]
    paper = tr.get("paper_value")
    metric_name = tr.get("metric") or "mIoU"
    if _finite(paper):
        points.append(Metric(f"paper_{metric_name}", float(paper), ts, step))
        if _finite(metrics.get(metric_name)):
            points.append(Metric("delta_vs_paper", 100.0 * float(metrics[metric_name]) - float(paper), ts, step))
    for prefix, rows in (("train", run["train_log.jsonl"]), ("val", run["val_log.jsonl"])):
        for row in rows:
            if not isinstance(row, dict) or not isinstance(row.get("iter"), int):
                continue
            for k, v in row.items():
                if k != "iter" and _finite(v):
                    value = 100.0 * float(v) if prefix == "val" and k in PERCENT_METRICS else float(v)
                    points.append(Metric(f"{prefix}/{k}", value, ts, int(row["iter"])))
    return points


def retire_superseded(client, found: list, rid: str, out: dict) -> dict:
    """Soft-delete the runs ``found`` under the same key that run ``rid`` replaces (complete ones get
    the superseded-by tag; half-logged ones are just deleted); record the outcome in ``out``."""
    replaced = []
    for r in found:  # superseded complete runs, and loggers that died half-way
        if r.data.tags.get(COMPLETE_TAG) == "true":
            client.set_tag(r.info.run_id, SUPERSEDED_TAG, rid)
            replaced.append(r.info.run_id)
        client.delete_run(r.info.run_id)
    out.update(run_id=rid, status="replaced" if replaced else "logged")
    if replaced:
        out["replaced"] = replaced
    return out


def log_items(items: list[dict], *, tracking_uri: str | None = None,
              artifact_root: str | Path | None = None) -> list[dict]:
    """Log runs already read by ``read_run_dir`` serially, under the store's lock (the only writer)."""
    from mlflow.tracking import MlflowClient

    uri = tracking_uri or default_tracking_uri()
    root = Path(artifact_root) if artifact_root else default_artifact_root()
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    with locked(lock_path(uri, root)):
        client = MlflowClient(tracking_uri=uri)
        return [log_run(client, item, root) for item in items]


def log_runs(run_dirs, *, tracking_uri: str | None = None, artifact_root: str | Path | None = None) -> list[dict]:
    """Log each run dir (see the module docstring); returns one ``{run_dir, key, run_id, status}`` per
    run, status ``logged``, ``replaced`` (content changed; ``replaced`` lists the old run ids) or
    ``skipped`` (the same content is already in the store)."""
    runs = [read_run_dir(d) for d in run_dirs]  # all readable before anything is logged
    return log_items(runs, tracking_uri=tracking_uri, artifact_root=artifact_root)
