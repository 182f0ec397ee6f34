"""The claims table in a real MLflow store (sqlite file): the live runs of ``<scale>/claims`` equal
``claims.csv`` row for row; re-logging an unchanged table logs nothing; a changed claim replaces its
run (soft delete, tagged), a claim gone from the table is removed."""
import json
import random
from pathlib import Path

import pandas as pd
import pytest

from protoseg.engine.tracking import SUPERSEDED_TAG, TrackingError
from protoseg.pipeline.claims import build_claims
from protoseg.pipeline.claims_tracking import log_claims
from protoseg.pipeline.experiments import build_plan, load_pipeline_config


def _write_all(plan, rng):
    for key in plan.runs:
        for seed in plan.seeds:
            d = Path(plan.run_dir(key, seed))
            d.mkdir(parents=True, exist_ok=True)
            (d / "metrics.json").write_text(json.dumps({"mIoU": rng.uniform(0.2, 0.5)}))


def _store(tmp_path):
    return {"tracking_uri": f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}", "artifact_root": str(tmp_path / "art")}


def _runs(store, scale, view="active"):
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store["tracking_uri"])
    exp = client.get_experiment_by_name(f"{scale}/claims")
    vt = {"active": ViewType.ACTIVE_ONLY, "all": ViewType.ALL, "deleted": ViewType.DELETED_ONLY}[view]
    return client.search_runs([exp.experiment_id], run_view_type=vt, max_results=1000), exp


def _assert_equal_to_csv(store, plan, csv_path):
    table = pd.read_csv(csv_path, keep_default_na=False)
    runs, exp = _runs(store, plan.scale)
    assert "claims table" in exp.tags["mlflow.note.content"]
    assert sorted(r.data.params["claim_id"] for r in runs) == sorted(table["claim_id"])
    by_id = {r.data.params["claim_id"]: r for r in runs}
    for row in table.to_dict("records"):
        r = by_id[row["claim_id"]]
        assert r.data.params["table"] == row["table"] and r.data.params["comparison"] == row["comparison"]
        assert r.data.tags["verdict"] == row["verdict"] and r.data.tags["claim"] == row["claim"]
        assert r.data.params.get("paper_best", "") == row["paper_best"]
        for k in ("paper_delta", "our_delta", "ci_lo", "ci_hi", "n_seeds"):
            if row[k] == "":  # n/a in the table: not logged
                assert k not in r.data.metrics, (row["claim_id"], k)
            else:
                assert r.data.metrics[k] == pytest.approx(float(row[k]), abs=1e-12), (row["claim_id"], k)
        assert r.data.tags["source"] == str(Path(csv_path).resolve())  # outside the repo: absolute
    return table, by_id


def test_claims_in_mlflow_equal_the_csv_and_follow_it(plan, tmp_path):
    rng = random.Random(0)
    _write_all(plan, rng)
    out = tmp_path / "tables"
    (_, csv_path), _, rows = build_claims(plan, out)
    store = _store(tmp_path)

    first = log_claims(csv_path, scale=plan.scale, **store)
    assert len(first) == len(rows) > 0 and {r["status"] for r in first} == {"logged"}  # one run per claim
    table, by_id = _assert_equal_to_csv(store, plan, csv_path)
    assert (table["ci_lo"] != "").all()  # 3 seeds: every interval was logged
    ids_before = {cid: r.info.run_id for cid, r in by_id.items()}

    # unchanged table: nothing new in the store (deleted runs counted too)
    again = log_claims(csv_path, scale=plan.scale, **store)
    assert {r["status"] for r in again} == {"skipped"}
    assert len(_runs(store, plan.scale, "all")[0]) == len(rows)

    # a re-trained run changes the claims that use it: exactly that one is replaced
    key = plan.entry_run["t5d-euclidean"]
    assert plan.runs[key].entries == ["t5d-euclidean"]
    for seed in plan.seeds:
        (Path(plan.run_dir(key, seed)) / "metrics.json").write_text(json.dumps({"mIoU": 0.01}))
    _, _, rows2 = build_claims(plan, out)
    changed = {a["claim_id"] for a, b in zip(rows, rows2) if json.dumps(a, default=str) != json.dumps(b, default=str)}
    assert changed == {"table5d:cosine-vs-t5d-euclidean"}
    third = log_claims(csv_path, scale=plan.scale, **store)
    status = {r["claim_id"]: r["status"] for r in third}
    assert {c for c, s in status.items() if s == "replaced"} == changed
    assert {s for c, s in status.items() if c not in changed} == {"skipped"}
    _, by_id = _assert_equal_to_csv(store, plan, csv_path)
    assert by_id["table5d:cosine-vs-t5d-euclidean"].data.metrics["our_delta"] > 15  # 20-50% vs 1%
    deleted, _ = _runs(store, plan.scale, "deleted")
    assert {r.info.run_id for r in deleted} == {ids_before[c] for c in changed}
    assert {r.data.tags[SUPERSEDED_TAG] for r in deleted} == {by_id[c].info.run_id for c in changed}

    # a claim gone from the table is removed from MLflow too
    table = pd.read_csv(csv_path, keep_default_na=False)
    gone = table["claim_id"].iloc[0]
    table.iloc[1:].to_csv(csv_path, index=False)
    fourth = log_claims(csv_path, scale=plan.scale, **store)
    assert [r["status"] for r in fourth if r["status"] != "skipped"] == ["removed"]
    _assert_equal_to_csv(store, plan, csv_path)
    assert gone not in {r.data.params["claim_id"] for r in _runs(store, plan.scale)[0]}


def test_one_seed_intervals_are_not_logged(tmp_path):
    plan = build_plan(load_pipeline_config(None, {"runs_dir": str(tmp_path / "runs"), "seeds": [0]}))
    _write_all(plan, random.Random(1))
    (_, csv_path), _, _ = build_claims(plan, tmp_path / "tables")
    store = _store(tmp_path)
    log_claims(csv_path, scale=plan.scale, **store)
    _, by_id = _assert_equal_to_csv(store, plan, csv_path)
    assert all("ci_lo" not in r.data.metrics and r.data.metrics["n_seeds"] == 1 for r in by_id.values())
    assert {r.data.tags["verdict"] for r in by_id.values()} == {"inconclusive"}


def test_bad_claims_csv_is_refused_before_logging(tmp_path):
    store = _store(tmp_path)
    bad = tmp_path / "claims.csv"
    bad.write_text("claim_id,table\nx,table1\n")
    with pytest.raises(TrackingError, match=r"claims.csv: columns .* expected"):
        log_claims(bad, scale="mini", **store)
    with pytest.raises(TrackingError, match="not found"):
        log_claims(tmp_path / "missing.csv", scale="mini", **store)
    assert not (tmp_path / "store").exists()  # nothing was created
