"""Bad input as a user gives it, one parametrised test per case class (data, config, checkpoint,
tracking, pipeline, signals): the real CLI (``protoseg.cli.main``, a subprocess for signals), its
exit status (docs/errors.md), the message's key words, no traceback, and nothing written or lost."""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine_helpers import REPO, cli_env, make_root, tiny_config, write_config
from protoseg.cli import main
from protoseg.data.mini import make_mini


def _run(capsys, argv):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def _tree(path: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()} if path.exists() else {}


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ---- data --------------------------------------------------------------------------------------------
def _data_case(name, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    if name == "crafted_pickle":
        make_mini("ade20k-full", src, seed=0)
        (src / "index_ade20k.pkl").write_bytes(pickle.dumps({"filename": _Evil(tmp_path / "PWNED")}))
        return ["prepare", "ade20k-full", "--src", src, "--dst", dst, "--quiet"], ["index_ade20k.pkl",
                                                                                  "refusing to load the global"]
    if name == "foreign_dst":
        make_mini("ade20k", src, seed=0)
        (dst / "images" / "train").mkdir(parents=True)
        (dst / "images" / "train" / "photo.jpg").write_bytes(b"mine")
        return ["prepare", "ade20k", "--src", src, "--dst", dst, "--quiet"], ["not empty", "--force"]
    if name == "missing_src":
        return ["prepare", "ade20k", "--src", tmp_path / "nope", "--dst", dst, "--quiet"], ["nope"]
    if name == "not_a_root":
        dst.mkdir()
        return ["prepare", "ade20k", "--check", dst, "--quiet"], ["meta.json"]
    raise AssertionError(name)


@pytest.mark.parametrize("case", ["crafted_pickle", "foreign_dst", "missing_src", "not_a_root"])
def test_data(case, tmp_path, capsys):
    argv, words = _data_case(case, tmp_path)
    before = _tree(tmp_path)
    code, err = _run(capsys, argv)
    assert code == 2, err
    for w in words:
        assert w in err, (w, err)
    assert _tree(tmp_path) == before  # nothing written, nothing lost
    assert not (tmp_path / "PWNED").exists()


# ---- config ------------------------------------------------------------------------------------------
CONFIG_CASES = {
    "not_a_number": (["optim.lr=abc"], ["optim.lr='abc'", "float"]),
    "empty_value": (["train.iters="], ["train.iters is empty", "int"]),
    "scalar_for_list": (["data.crop_size=64"], ["data.crop_size=64", "list of ints"]),
    "unknown_key": (["train.itres=3"], ["itres", "valid keys"]),
    "bad_override_syntax": (["train.iters"], ["expected key=value"]),
    "missing_data_root": (["data.root=/nonexistent/prepared"], ["/nonexistent/prepared", "meta.json"]),
    "binary_file": ("binary", ["not a text file"]),
    "not_a_mapping": ("list", ["expected a mapping", "list"]),
    "missing_file": ("missing", ["config file not found"]),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_config(case, tmp_path, capsys):
    spec, words = CONFIG_CASES[case]
    cfg = tiny_config(Path("/nonexistent/prepared"), tmp_path / "runs")
    path = write_config(cfg, tmp_path / "c.yaml")
    overrides = spec if isinstance(spec, list) else []
    if spec == "binary":
        path.write_bytes(b"\x00\xff\xfe\x89PNG binary")
    elif spec == "list":
        path.write_text("- 1\n- 2\n")
    elif spec == "missing":
        path = tmp_path / "absent.yaml"
    code, err = _run(capsys, ["train", "--config", path, *overrides])
    assert code == 2, err
    for w in words:
        assert w in err, (w, err)
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1  # one line
    assert not (tmp_path / "runs").exists()  # nothing written


def test_config_numbers_as_people_write_them():
    from protoseg.config import load_config

    cfg = load_config(REPO / "configs/mini/example.yaml", ["optim.lr=6e-5", "model.method.update_assignment=gumbel"])
    assert cfg.optim.lr == 6e-5 and cfg.model.method.update_assignment == "gumbel"
    assert cfg.model.num_prototypes == 4


def test_method_keys_written_before_their_move_still_load_into_their_one_home(capsys):
    """run.yaml files and checkpoints of earlier versions kept K, the preset and align_corners under
    model.method: they load into the model section, and a value that contradicts it is refused."""
    from protoseg.cli import main
    from protoseg.config import load_config

    cfg = load_config(REPO / "configs/mini/example.yaml", ["model.method.variant=official",
                                                           "model.method.num_prototypes=4",
                                                           "model.method.align_corners=false",
                                                           "model.method.ignore_index=255"])
    assert (cfg.model.method_variant, cfg.model.num_prototypes, cfg.model.align_corners) == ("official", 4, False)
    assert cfg.model.method.projection  # the official preset
    assert main(["train", "--config", str(REPO / "configs/mini/example.yaml"), "model.method.num_prototypes=5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: configs/mini/example.yaml + overrides: model.method.num_prototypes=5 differs from "
                   "model.num_prototypes=4: set it once, as model.num_prototypes").replace(
        "configs/", str(REPO / "configs") + "/", 1)
    assert main(["train", "--config", str(REPO / "configs/mini/example.yaml"), "model.method.ignore_index=0"]) == 2
    assert "model.method.ignore_index=0 but dataset 'cityscapes' uses 255" in capsys.readouterr().err


# ---- checkpoint --------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["missing", "garbage", "foreign_pickle"])
def test_checkpoint(case, tmp_path, capsys):
    ck = tmp_path / "ck.pt"
    if case == "garbage":
        ck.write_bytes(b"not a checkpoint at all")
    elif case == "foreign_pickle":
        ck.write_bytes(pickle.dumps(_Evil(tmp_path / "PWNED")))
    before = _tree(tmp_path)
    code, err = _run(capsys, ["evaluate", "--checkpoint", ck, "--quiet"])
    assert code == 2, err
    assert str(ck) in err and ("not found" in err if case == "missing" else "unreadable checkpoint" in err)
    assert _tree(tmp_path) == before and not (tmp_path / "PWNED").exists()


# ---- tracking ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["not_a_run", "metrics_not_a_mapping", "metrics_not_json", "no_seed"])
def test_tracking(case, tmp_path, capsys):
    pytest.importorskip("mlflow")
    d = tmp_path / "run"
    d.mkdir()
    if case != "not_a_run":
        (d / "config.yaml").write_text("run: {seed: 0, name: x}\n" if case != "no_seed" else "run: {name: x}\n")
        (d / "metrics.json").write_text({"metrics_not_a_mapping": "[1, 2]", "metrics_not_json": "{nope",
                                         "no_seed": '{"mIoU": 0.5}'}[case])
    words = {"not_a_run": "config.yaml: missing", "metrics_not_a_mapping": "not a mapping",
             "metrics_not_json": "unreadable run file", "no_seed": "run.seed missing"}[case]
    store = tmp_path / "store"
    code, err = _run(capsys, ["log-mlflow", d, "--tracking-uri", f"sqlite:///{store}/mlflow.db",
                              "--artifact-root", store / "art"])
    assert code == 2 and words in err, err
    assert not store.exists()  # read before anything is logged: the store is not even created


# ---- pipeline ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["unknown_run", "bad_seeds", "bad_scale_file"])
def test_pipeline(case, tmp_path, capsys):
    runs = tmp_path / "runs"
    if case == "unknown_run":
        argv, words = (["experiments", "config", "nosuchkey", "--runs-dir", runs, "--out", runs / "x/run.yaml"],
                       ["no run 'nosuchkey'"])
    elif case == "bad_seeds":
        argv, words = ["experiments", "list", "--seeds", "0,one"], ["--seeds '0,one'", "integers"]
    else:
        cfg = tmp_path / "pipeline.yaml"
        cfg.write_text(f"scale: mini\nseeds: [0]\nscales_dir: {tmp_path}/none\ntables: [table1]\n")
        argv, words = ["experiments", "list", "--pipeline-config", cfg], ["none"]
    code, err = _run(capsys, argv)
    assert code == 2, err
    for w in words:
        assert w in err, (w, err)
    assert not runs.exists()


# ---- signals -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_root(tmp_path_factory.mktemp("cs_mini"))


@pytest.mark.slow
@pytest.mark.parametrize("sig,code,words", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 75, "SIGTERM")])
def test_signals(sig, code, words, root, tmp_path):
    cfg = tiny_config(root, tmp_path, train={"iters": 100000, "ckpt_interval": 100000})
    path = write_config(cfg, tmp_path / "c.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "protoseg.cli", "train", "--config", str(path)], cwd=REPO,
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "run" / "train_log.jsonl"
    deadline = time.monotonic() + 600  # guards a hang only
    while not (log.is_file() and log.read_text().strip()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == code, err
    assert words in err and "checkpoint written" in err and "Traceback" not in err
    from protoseg.engine import checkpoint as ckpt_lib

    (ck,) = ckpt_lib.list_checkpoints(tmp_path / "run" / "checkpoints")
    it = ckpt_lib.load_checkpoint(ck)["iteration"]
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    assert it >= 1 and rows[-1]["iter"] == it  # the checkpoint is of the last logged iteration
