"""Names are data, never query syntax (issue 19 item 2): every user-given MLflow name (experiment,
entry, table, row, column) with quotes, backslashes, spaces, ``=``, non-ASCII letters or 250
characters logs, re-logs (replaces) and reads back unchanged against a real MLflow sqlite store; a
name MLflow cannot store is refused with status 2 in config validation, before anything is written."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine_helpers import tiny_config, write_config
from protoseg.atomic_io import write_json_atomic
from protoseg.cli import main
from protoseg.config import RunConfig

mlflow = pytest.importorskip("mlflow")
from mlflow.entities import ViewType  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

NAMES = {
    "single_quote": "it's-mine",
    "double_quote": 'the "best" row',
    "backslash": "a\\b\\'c",
    "filter_syntax": "x' OR tags.entry = 'y",
    "spaces_equals": "lr = 0.01, K = 10",
    "backtick": "tags.`protoseg.key`",
    "non_ascii": "Tabelle Größe: 日本語 ñ é",
    "long_250": ("é" + "x'\"\\= " * 50)[:250],
    "slashes_dots": "../../etc/../x",
}


def _run_dir(out: Path, i: int, name: str, miou: float) -> Path:
    cfg = RunConfig.from_dict(tiny_config(Path("/nonexistent"), out, f"r{i}", run={"seed": 0},
                                          tracking={"experiment": name, "entry": name, "table": name,
                                                    "row": name, "column": name, "paper_value": 50.0}))
    d = cfg.run_dir
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.yaml").write_text(cfg.dump())
    write_json_atomic(d / "metrics.json", {"mIoU": miou, "aAcc": 0.8, "mAcc": 0.6})
    return d


@pytest.mark.parametrize("case", sorted(NAMES))
def test_names_log_relog_and_read_back(case, tmp_path):
    from protoseg.engine.tracking import SUPERSEDED_TAG, log_runs

    name = NAMES[case]
    uri, art = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}", tmp_path / "store" / "art"
    d = _run_dir(tmp_path / "runs", 0, name, 0.25)
    first = log_runs([d], tracking_uri=uri, artifact_root=art)
    assert first[0]["status"] == "logged"
    assert log_runs([d], tracking_uri=uri, artifact_root=art)[0]["status"] == "skipped"
    write_json_atomic(d / "metrics.json", {"mIoU": 0.5, "aAcc": 0.8, "mAcc": 0.6})  # re-trained
    third = log_runs([d], tracking_uri=uri, artifact_root=art)
    assert third[0]["status"] == "replaced" and third[0]["replaced"] == [first[0]["run_id"]]

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(name)
    assert exp is not None and exp.name == name
    (alive,) = client.search_runs([exp.experiment_id])
    assert alive.info.run_id == third[0]["run_id"]
    for tag in ("entry", "table", "row", "column"):
        assert alive.data.tags[tag] == name
    assert alive.data.tags["protoseg.key"] == f"{name}|seed=0"
    assert alive.data.params["tracking.entry"] == name
    assert alive.data.metrics["mIoU"] == pytest.approx(50.0)
    assert alive.info.run_name.endswith("-s0") and len(alive.info.run_name) <= 250
    assert name.startswith(alive.info.run_name[:-3])
    (old,) = [r for r in client.search_runs([exp.experiment_id], run_view_type=ViewType.DELETED_ONLY)]
    assert old.data.tags[SUPERSEDED_TAG] == alive.info.run_id
    # artifacts stay under the artifact root whatever the name
    loc = Path(exp.artifact_location.removeprefix("file://"))
    assert loc.resolve().is_relative_to(art.resolve())
    assert (loc / alive.info.run_id / "artifacts" / "metrics.json").is_file()


def test_names_that_differ_only_by_quotes_are_different_runs(tmp_path):
    """Two entries that a pasted filter would confuse stay two runs; neither replaces the other."""
    from protoseg.engine.tracking import log_runs

    uri, art = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}", tmp_path / "store" / "art"
    dirs = []
    for i, entry in enumerate(["a'b", "a''b", 'a"b', "a\\'b"]):
        d = _run_dir(tmp_path / "runs", i, "same-experiment", 0.25)
        cfg = (d / "config.yaml").read_text().replace("entry: same-experiment", f"entry: {json.dumps(entry)}")
        (d / "config.yaml").write_text(cfg)
        dirs.append(d)
    results = log_runs(dirs, tracking_uri=uri, artifact_root=art)
    assert [r["status"] for r in results] == ["logged"] * 4
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("same-experiment").experiment_id])
    assert sorted(r.data.tags["entry"] for r in runs) == sorted(["a'b", "a''b", 'a"b', "a\\'b"])


@pytest.mark.parametrize("key", ["experiment", "entry", "row"])
@pytest.mark.parametrize("value,words", [("x" * 251, "at most 250 characters"),
                                         ("tab\there", "control characters"),
                                         ("nul\x00", "control characters"),
                                         ("line\nbreak", "control characters")])
def test_names_mlflow_cannot_store_are_refused_before_training(key, value, words, tmp_path, capsys):
    cfg = tiny_config(Path("/nonexistent/prepared"), tmp_path / "runs")
    path = write_config(cfg, tmp_path / "c.yaml")
    code = main(["train", "--config", str(path), f"tracking.{key}={json.dumps(value)}"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and f"tracking.{key}" in line and words in line, line
    assert not (tmp_path / "runs").exists()


def test_metric_and_paper_value_are_checked(tmp_path, capsys):
    cfg = tiny_config(Path("/nonexistent/prepared"), tmp_path / "runs")
    path = write_config(cfg, tmp_path / "c.yaml")
    assert main(["train", "--config", str(path), "tracking.metric=m' OR 1=1"]) == 2
    assert "tracking.metric" in capsys.readouterr().err
    assert main(["train", "--config", str(path), "tracking.paper_value=.nan"]) == 2
    assert "tracking.paper_value" in capsys.readouterr().err


def test_log_mlflow_refuses_a_hand_written_unstorable_name(tmp_path, capsys):
    d = _run_dir(tmp_path / "runs", 0, "ok", 0.25)
    text = (d / "config.yaml").read_text().replace("entry: ok", 'entry: "bad\\u0000name"')
    (d / "config.yaml").write_text(text)
    store = tmp_path / "store"
    code = main(["log-mlflow", str(d), "--tracking-uri", f"sqlite:///{store}/mlflow.db",
                 "--artifact-root", str(store / "art")])
    err = capsys.readouterr().err
    assert code == 2 and "tracking.entry" in err and "Traceback" not in err
    assert not store.exists()
