"""MLflow logging of the claims table: one MLflow run per row of ``claims.csv``.

The rows are read from the file ``protoseg claims`` writes (``results/tables/claims.csv``), so MLflow
shows exactly the table. They go into the experiment ``<scale>/claims`` (beside ``<scale>/<table>``
of the table rows), one run per claim:

- params: ``claim_id``, ``table``, ``comparison`` (and ``paper_best``/``our_best`` on "best of" rows);
- metrics, in mIoU points: ``paper_delta``, ``our_delta``, ``ci_lo``, ``ci_hi`` and ``n_seeds``
  (a value the table gives as n/a, e.g. the interval of one seed, is not logged);
- tags: ``verdict``, ``claim`` (the text), ``table``, ``source`` (the CSV, relative to the repository),
  ``protoseg.key`` (``claim|<claim_id>``), ``protoseg.content`` (sha256 of the row) and
  ``protoseg.complete``;
- start and end time: when the CSV was written (the claims are computed, not trained).

As for the table rows (``protoseg.engine.tracking``), under the store's lock: an unchanged row is
``skipped``; a changed row is logged anew and REPLACES the old run (tag ``protoseg.superseded_by``,
MLflow's soft delete); a half-logged run is deleted and logged again; and a claim no longer in the
CSV is soft-deleted (``removed``), so the experiment holds the table's rows and nothing else.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

from protoseg.atomic_io import sha256_json
from protoseg.engine.tracking import (COMPLETE_TAG, CONTENT_TAG, KEY_TAG, SUPERSEDED_TAG, TrackingError,
                                      default_artifact_root, default_tracking_uri, ensure_experiment, lock_path,
                                      locked, repo_relative, retire_superseded, runs_with_tag)

from .claims import COLUMNS

PARAMS = ("claim_id", "table", "comparison", "paper_best", "our_best")
METRICS = ("paper_delta", "our_delta", "ci_lo", "ci_hi", "n_seeds")
KEY_PREFIX = "claim|"


def read_claims_csv(path: str | Path) -> list[dict[str, str]]:
    """The rows of ``claims.csv`` (strings, as written); the header must be ``claims.COLUMNS``."""
    path = Path(path)
    if not path.is_file():
        raise TrackingError(f"{path}: claims table not found; build it with `protoseg claims`")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != COLUMNS:
            raise TrackingError(f"{path}: columns {reader.fieldnames}; expected {COLUMNS} "
                                "(the file `protoseg claims` writes)")
        rows = list(reader)
    ids = [r["claim_id"] for r in rows]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise TrackingError(f"{path}: claim_id {dup[0]!r} appears more than once; expected one row per claim")
    for r in rows:
        for k in METRICS:
            try:
                _number(r[k])
            except ValueError:
                raise TrackingError(f"{path}: claim {r['claim_id']!r}: {k}={r[k]!r}: expected a number "
                                    "or empty (n/a)") from None
    return rows


def _number(text: str) -> float:
    """A CSV cell as a float; empty (pandas writes NaN as '') or 'nan' is NaN."""
    return math.nan if text.strip().lower() in ("", "nan") else float(text)


def row_content(row: dict[str, str]) -> str:
    """sha256 of the row (canonical JSON of every column)."""
    return sha256_json({k: row.get(k, "") for k in COLUMNS})


def describe_claims(scale: str) -> str:
    text = (f"The claims table (results/tables/claims.csv), scale `{scale}`: one MLflow run per comparison "
            "the paper makes, paired by seed. Metrics in mIoU points: paper_delta (the paper's), our_delta "
            "(mean over seeds of the paired difference), ci_lo/ci_hi (95% t-interval; not logged with one "
            "seed), n_seeds. Tag verdict: reproduced, contradicted or inconclusive. Logged from the CSV by "
            "`protoseg experiments log-mlflow --claims`; a changed row replaces its run.")
    if scale == "mini":
        text += " Mini scale: synthetic miniature twins; the verdicts are about this scale, not the paper's."
    return text


def _log_row(client, exp_id: str, row: dict[str, str], found: list, source: Path, time_ms: int) -> dict:
    from mlflow.entities import Metric, Param, RunTag

    key = KEY_PREFIX + row["claim_id"]
    content = row_content(row)
    out = {"claim_id": row["claim_id"], "key": key}
    same = [r for r in found if r.data.tags.get(COMPLETE_TAG) == "true" and r.data.tags.get(CONTENT_TAG) == content]
    if same:
        return {**out, "run_id": same[0].info.run_id, "status": "skipped"}
    tags = {KEY_TAG: key, CONTENT_TAG: content, "verdict": row["verdict"], "claim": row["claim"][:5000],
            "table": row["table"], "source": repo_relative(source)}
    run = client.create_run(exp_id, run_name=row["claim_id"], tags=tags, start_time=time_ms)
    rid = run.info.run_id
    params = [Param(k, row[k][:6000]) for k in PARAMS if row[k]]
    metrics = [Metric(k, _number(row[k]), time_ms, 0) for k in METRICS if not math.isnan(_number(row[k]))]
    client.log_batch(rid, metrics=metrics, params=params, tags=[RunTag(COMPLETE_TAG, "true")])
    client.set_terminated(rid, end_time=time_ms)
    return retire_superseded(client, found, rid, out)


def log_claims(claims_csv: str | Path, *, scale: str, tracking_uri: str | None = None,
               artifact_root: str | Path | None = None) -> list[dict]:
    """Log every row of ``claims_csv`` into experiment ``<scale>/claims`` (see the module docstring).

    Returns one ``{claim_id, key, run_id, status}`` per row, status ``logged``, ``replaced`` or
    ``skipped``, then one ``{key, run_id, status: "removed"}`` per claim no longer in the table."""
    from mlflow.tracking import MlflowClient

    source = Path(claims_csv)
    rows = read_claims_csv(source)  # all readable before anything is logged
    time_ms = int(source.stat().st_mtime * 1000)
    uri = tracking_uri or default_tracking_uri()
    root = Path(artifact_root) if artifact_root else default_artifact_root()
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    name = f"{scale}/claims"
    with locked(lock_path(uri, root)):
        client = MlflowClient(tracking_uri=uri)
        exp_id = ensure_experiment(client, name, root, describe_claims(scale))
        by_key: dict[str, list] = {}
        for r in runs_with_tag(client, exp_id, KEY_TAG):  # every live run, matched by value in Python
            by_key.setdefault(r.data.tags.get(KEY_TAG, ""), []).append(r)
        results = [_log_row(client, exp_id, row, by_key.pop(KEY_PREFIX + row["claim_id"], []), source, time_ms)
                   for row in rows]
        for key, runs in sorted(by_key.items()):
            if not key.startswith(KEY_PREFIX):
                continue  # not ours: leave it
            for r in runs:
                client.set_tag(r.info.run_id, SUPERSEDED_TAG, "removed")
                client.delete_run(r.info.run_id)
                results.append({"key": key, "run_id": r.info.run_id, "status": "removed"})
    return results
