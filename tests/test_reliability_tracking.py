"""MLflow follows the files: a re-trained run (new metrics.json), an edited config or paper value
replaces the old MLflow run; the same content is skipped; metrics in the tables' units; the
training's start/end times; the experiment's description; run_dir relative to the repository."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from protoseg.atomic_io import write_json_atomic

mlflow = pytest.importorskip("mlflow")
from mlflow.entities import ViewType  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from test_engine_tracking import fake_run  # noqa: E402


def _store(tmp_path):
    return f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}", tmp_path / "store" / "artifacts"


def _rewrite_metrics(run_dir: Path, miou: float) -> None:
    m = json.loads((run_dir / "metrics.json").read_text())
    m["mIoU"] = miou
    write_json_atomic(run_dir / "metrics.json", m)


def test_retrained_run_replaces_the_old_mlflow_run(tmp_path):
    from protoseg.engine.tracking import CONTENT_TAG, SUPERSEDED_TAG, log_runs

    uri, art = _store(tmp_path)
    d = fake_run(tmp_path / "runs", "HRNet-ours", 0, paper_value=48.5)
    write_json_atomic(d / "run_info.json", {"git_commit": "abc", "data_hash": "d" * 64, "attempts": [
        {"started": "2026-01-02T03:04:05+00:00", "start_iteration": 0}], "finished": "2026-01-02T04:00:00+00:00"})
    first = log_runs([d], tracking_uri=uri, artifact_root=art)
    assert first[0]["status"] == "logged"
    client = MlflowClient(tracking_uri=uri)
    old = client.get_run(first[0]["run_id"])
    assert old.data.metrics["mIoU"] == pytest.approx(37.5)
    assert old.data.metrics["paper_mIoU"] == pytest.approx(48.5)
    assert old.data.metrics["delta_vs_paper"] == pytest.approx(37.5 - 48.5)
    assert old.data.metrics["aAcc"] == pytest.approx(80.0)
    hist = client.get_metric_history(old.info.run_id, "val/mIoU")
    assert [m.value for m in hist] == [pytest.approx(10.0)]
    # the training's times, not the logging's
    assert old.info.start_time == 1767323045000 and old.info.end_time == 1767326400000
    assert old.data.tags["run_dir"] == str(d.resolve())  # outside the repository: absolute

    # the same files again: skipped, nothing new
    again = log_runs([d], tracking_uri=uri, artifact_root=art)
    assert again[0]["status"] == "skipped" and again[0]["run_id"] == first[0]["run_id"]

    # re-trained with another result: the old MLflow run is replaced
    _rewrite_metrics(d, 0.5)
    third = log_runs([d], tracking_uri=uri, artifact_root=art)
    assert third[0]["status"] == "replaced" and third[0]["replaced"] == [first[0]["run_id"]]
    exp = client.get_experiment_by_name("table3")
    alive = client.search_runs([exp.experiment_id])
    assert [r.info.run_id for r in alive] == [third[0]["run_id"]]
    assert alive[0].data.metrics["mIoU"] == pytest.approx(50.0)
    assert alive[0].data.metrics["delta_vs_paper"] == pytest.approx(50.0 - 48.5)
    gone = client.get_run(first[0]["run_id"])
    assert gone.info.lifecycle_stage == "deleted" and gone.data.tags[SUPERSEDED_TAG] == third[0]["run_id"]
    assert alive[0].data.tags[CONTENT_TAG] != gone.data.tags[CONTENT_TAG]
    assert len(client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL)) == 2
    assert "Table 3" in exp.tags["mlflow.note.content"]

    # a config change alone (same metrics) is new content as well
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    cfg["tracking"]["paper_value"] = 40.0
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    fourth = log_runs([d], tracking_uri=uri, artifact_root=art)
    assert fourth[0]["status"] == "replaced"
    (alive,) = client.search_runs([exp.experiment_id])
    assert alive.data.metrics["delta_vs_paper"] == pytest.approx(10.0)


def test_pipeline_mlflow_agrees_with_the_table_after_an_edit(tmp_path):
    """The pipeline path: log, re-train (new metrics.json), log: MLflow's mIoU is the table's."""
    from protoseg.pipeline.experiments import build_plan
    from protoseg.pipeline.tables import table_frame
    from protoseg.pipeline.tracking import log_plan_runs

    plan = build_plan(scale="mini", seeds=[0], runs_dir=str(tmp_path / "runs"))
    key = plan.entry_run["t1-fcn-r101"]
    d = Path(plan.run_dir(key, 0))
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump(plan.run_config(key, 0)))
    uri, art = _store(tmp_path)
    client = MlflowClient(tracking_uri=uri)
    for miou, status in ((0.25, "logged"), (0.25, "skipped"), (0.3125, "replaced")):
        (d / "metrics.json").write_text(json.dumps({"mIoU": miou, "aAcc": 0.5, "mAcc": 0.3, "iteration": 60}))
        results = log_plan_runs(plan, [key], tracking_uri=uri, artifact_root=str(art))
        assert {r["status"] for r in results} == {status}
        df = table_frame(plan, "table1")
        row = df[df["row"] == "FCN, ResNet-101"].iloc[0]
        exp = client.get_experiment_by_name("mini/table1")
        (run,) = client.search_runs([exp.experiment_id], filter_string="tags.entry = 't1-fcn-r101'")
        assert run.data.metrics["mIoU"] == pytest.approx(row["mIoU_mean"]) == pytest.approx(100 * miou)
        assert run.data.metrics["paper_mIoU"] == pytest.approx(row["paper_mIoU"])
        assert run.data.tags["run_dir"] == str(d.resolve())
    assert exp.tags["mlflow.note.content"].startswith("Table 1. ADE20K val (table1), scale `mini`")


def test_run_dir_tag_is_repo_relative():
    from protoseg.engine.tracking import REPO, repo_relative

    assert repo_relative(REPO / "runs" / "mini" / "abc" / "s0") == "runs/mini/abc/s0"
    assert repo_relative("/elsewhere/x") == "/elsewhere/x"


def test_commit_and_data_tags_name_every_attempt():
    from protoseg.engine.tracking import _joined

    info = {"git_commit": "a1", "git_commits": ["a1", "b2"], "data_hash": "d", "data_hashes": ["d"]}
    assert _joined(info, "git_commit") == "a1,b2" and _joined(info, "data_hash") == "d"
    assert _joined({}, "git_commit") == "unknown"


def test_pipeline_paper_value_edit_replaces_and_agrees_with_the_table(tmp_path):
    """An experiments.yaml edit of an entry's paper value: the next logging replaces the MLflow run,
    whose paper_mIoU and delta are the table's."""
    import dataclasses

    from protoseg.pipeline.experiments import build_plan
    from protoseg.pipeline.tables import table_frame
    from protoseg.pipeline.tracking import log_plan_runs

    plan = build_plan(scale="mini", seeds=[0], runs_dir=str(tmp_path / "runs"))
    key = plan.entry_run["t1-fcn-r101"]
    d = Path(plan.run_dir(key, 0))
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump(plan.run_config(key, 0)))
    (d / "metrics.json").write_text(json.dumps({"mIoU": 0.25, "aAcc": 0.5, "mAcc": 0.3, "iteration": 60}))
    uri, art = _store(tmp_path)
    assert {r["status"] for r in log_plan_runs(plan, [key], tracking_uri=uri, artifact_root=str(art))} == {"logged"}
    plan.entries["t1-fcn-r101"] = dataclasses.replace(plan.entries["t1-fcn-r101"], paper_value=30.0)
    res = log_plan_runs(plan, [key], tracking_uri=uri, artifact_root=str(art))
    assert {r["status"] for r in res if "t1-fcn" in r["key"]} == {"replaced"}
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("mini/table1").experiment_id],
                                filter_string="tags.entry = 't1-fcn-r101'")
    row = table_frame(plan, "table1").set_index("row").loc["FCN, ResNet-101"]
    assert run.data.metrics["paper_mIoU"] == pytest.approx(row["paper_mIoU"]) == pytest.approx(30.0)
    assert run.data.metrics["delta_vs_paper"] == pytest.approx(-5.0)
