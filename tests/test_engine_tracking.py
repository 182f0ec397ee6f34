"""MLflow logging step: contents read back with MLflow's own client, idempotent re-logging, and 16
concurrent logging processes on one sqlite store losing nothing."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from engine_helpers import REPO, cli_env, tiny_config
from protoseg.atomic_io import write_json_atomic
from protoseg.config import RunConfig
from protoseg.engine.evaluate import write_eval_outputs

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402


def fake_run(out: Path, entry: str, seed: int, paper_value: float = 48.5) -> Path:
    """The files a finished training run writes (no training: the logging step only reads files)."""
    cfg = RunConfig.from_dict(tiny_config(Path("/nonexistent"), out, f"{entry}-s{seed}",
                                          run={"seed": seed},
                                          tracking={"experiment": "table3", "entry": entry, "table": "3",
                                                    "row": entry, "column": "mIoU (s.s.)",
                                                    "paper_value": paper_value}))
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(cfg.dump())
    write_json_atomic(run_dir / "run_info.json", {"git_commit": "abc123", "data_hash": "d" * 64})
    (run_dir / "train_log.jsonl").write_text("".join(
        json.dumps({"iter": i, "ce": 3.0 - 0.1 * i, "ppc": 4.0, "lr": 0.01, "img_per_s": 2.0}) + "\n"
        for i in range(1, 6)))
    (run_dir / "val_log.jsonl").write_text(json.dumps({"iter": 3, "mIoU": 0.1}) + "\n")
    iou = [0.5, float("nan"), 0.25]
    metrics = {"mIoU": 0.375 + seed / 1000, "aAcc": 0.8, "mAcc": 0.6, "IoU": iou, "Acc": [0.5, float("nan"), 0.7],
               "intersection": [1, 0, 1], "union": [2, 0, 4], "label_area": [2, 0, 1], "pred_area": [1, 0, 4],
               "confusion": [[1, 0, 1], [0, 0, 0], [0, 0, 1]]}
    write_eval_outputs(run_dir, metrics, ["a", "b", "c"], extra={"iteration": 5, "seed": seed})
    return run_dir


def test_log_read_back_and_idempotent(tmp_path):
    from protoseg.engine.tracking import log_runs

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    art = tmp_path / "store" / "artifacts"
    dirs = [fake_run(tmp_path / "runs", "HRNet-ours", s) for s in (0, 1)]
    first = log_runs(dirs, tracking_uri=uri, artifact_root=art)
    assert [r["status"] for r in first] == ["logged", "logged"]
    second = log_runs(dirs, tracking_uri=uri, artifact_root=art)
    assert [r["status"] for r in second] == ["skipped", "skipped"]
    assert [r["run_id"] for r in second] == [r["run_id"] for r in first]

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("table3")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 2
    run = client.get_run(first[1]["run_id"])
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert (tags["table"], tags["row"], tags["column"], tags["paper_value"]) == ("3", "HRNet-ours", "mIoU (s.s.)",
                                                                                "48.5")
    assert tags["git_commit"] == "abc123" and tags["data_hash"] == "d" * 64 and tags["seed"] == "1"
    assert params["model.backbone"] == "mit_b0" and params["train.iters"] == "6"
    assert metrics["mIoU"] == pytest.approx(37.6)  # the tables' unit: %
    assert metrics["delta_vs_paper"] == pytest.approx(37.6 - 48.5)
    hist = client.get_metric_history(run.info.run_id, "train/ce")
    assert [(m.step, round(m.value, 6)) for m in sorted(hist, key=lambda m: m.step)] == [
        (i, round(3.0 - 0.1 * i, 6)) for i in range(1, 6)]
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "metrics.json", "per_class_iou.csv", "confusion.png", "train_log.jsonl"} <= names
    local = client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path / "dl"))
    assert yaml.safe_load(Path(local).read_text())["tracking"]["entry"] == "HRNet-ours"


def test_incomplete_run_is_replaced(tmp_path):
    from protoseg.engine.tracking import COMPLETE_TAG, KEY_TAG, log_runs

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    d = fake_run(tmp_path / "runs", "x", 0)
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment("table3", artifact_location=(tmp_path / "a").as_uri())
    half = client.create_run(exp_id, tags={KEY_TAG: "x|seed=0"})  # a logger that died half-way
    res = log_runs([d], tracking_uri=uri, artifact_root=tmp_path / "a")
    assert res[0]["status"] == "logged"
    alive = client.search_runs([exp_id])
    assert [r.info.run_id for r in alive] == [res[0]["run_id"]]
    assert alive[0].data.tags[COMPLETE_TAG] == "true" and half.info.run_id != res[0]["run_id"]


@pytest.mark.slow
def test_16_concurrent_loggers_lose_nothing(tmp_path):
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    art = tmp_path / "store" / "artifacts"
    dirs = [fake_run(tmp_path / "runs", f"entry{e}", s) for e in range(6) for s in (0, 1)]
    jobs = [[d] for d in dirs] + [[dirs[0]], [dirs[1]], [dirs[5], dirs[6]], [dirs[11]]]  # 16, with duplicates
    assert len(jobs) == 16
    procs = [subprocess.Popen([sys.executable, "-m", "protoseg.cli", "log-mlflow", *map(str, j),
                               "--tracking-uri", uri, "--artifact-root", str(art)],
                              cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for j in jobs]
    outs = [p.communicate(timeout=400) for p in procs]
    assert [p.returncode for p in procs] == [0] * 16, [o[1][-2000:] for o in outs]
    statuses = [r["status"] for out, _ in outs for r in json.loads(out)]
    assert statuses.count("logged") == 12 and statuses.count("skipped") == 5
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("table3").experiment_id], max_results=1000)
    assert sorted(r.data.tags["protoseg.key"] for r in runs) == sorted(
        f"entry{e}|seed={s}" for e in range(6) for s in (0, 1))
    for r in runs:
        assert r.data.tags["protoseg.complete"] == "true"
        assert len(client.get_metric_history(r.info.run_id, "train/ce")) == 5
