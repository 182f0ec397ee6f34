"""Every CLI command with a bad path, and the pipeline's config files made bad (issue 19 item 3).

Each command of ``protoseg`` (in-process, ``protoseg.cli.main``) gets, where it takes a file or a
folder, one that is missing, a directory, an empty file or binary garbage; the pipeline commands
get copies of ``configs/pipeline.yaml``, ``configs/experiments.yaml`` and the scale file with one
thing broken. The contract (docs/errors.md): exit 2, one ``error:`` line naming the file or key, no
traceback, nothing written or half-written."""
from __future__ import annotations

import shutil
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine_helpers import REPO
from protoseg.cli import build_parser, main

# each command, with {P} where the bad path goes (and {T} a fresh folder for its outputs)
COMMANDS = {
    "prepare --src": ["prepare", "ade20k", "--src", "{P}", "--dst", "{T}/dst", "--quiet"],
    "prepare --check": ["prepare", "ade20k", "--check", "{P}", "--quiet"],
    "make-mini": ["make-mini", "ade20k", "--dst", "{P}"],
    "train": ["train", "--config", "{P}"],
    "evaluate": ["evaluate", "--checkpoint", "{P}", "--quiet"],
    "predict": ["predict", "--checkpoint", "{P}", "--out", "{T}/out", "{T}/img.png"],
    "log-mlflow": ["log-mlflow", "{P}", "--tracking-uri", "sqlite:///{T}/store/m.db", "--artifact-root",
                   "{T}/store/art"],
    "export-backbone": ["export-backbone", "{P}", "{T}/backbone.pt"],
    "convert-checkpoint": ["convert-checkpoint", "--format", "hrnet-msra", "{P}", "{T}/out.pth"],
    "compare-results --reference": ["compare-results", "--reference", "{P}", "--ours", str(REPO / "results/reference")],
    "compare-results --ours": ["compare-results", "--reference", str(REPO / "results/reference"), "--ours", "{P}"],
    **{f"{' '.join(c)} --pipeline-config": [*c, "--pipeline-config", "{P}", *extra] for c, extra in [
        (["experiments", "list"], []), (["experiments", "config"], ["t2-segf-b4"]),
        (["experiments", "log-mlflow"], ["--tracking-uri", "sqlite:///{T}/store/m.db"]),
        (["experiments", "params"], ["--out", "{T}/params.json"]),
        (["experiments", "dvc-yaml"], ["--out", "{T}/dvc.yaml"]),
        (["tables"], ["--out", "{T}/tables"]), (["claims"], ["--out", "{T}/tables"]),
        (["figures"], ["--out", "{T}/figures"])]},
}
# what a command may be given without being wrong: make-mini writes into an empty folder
ACCEPTED = {("make-mini", "directory"), ("make-mini", "missing")}
PATH_KINDS = ("missing", "directory", "empty_file", "binary")


def EXAMPLES(n: int) -> int:  # noqa: N802 - bounded in the fast tier; BAD_INPUT_EXAMPLES=x10 for a deep run
    return n * int(os.environ.get("BAD_INPUT_EXAMPLES", "1"))


def _tree(path: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _make(kind: str, tmp: Path) -> Path:
    p = tmp / "given"
    if kind == "directory":
        p.mkdir()
    elif kind == "empty_file":
        p.write_bytes(b"")
    elif kind == "binary":
        p.write_bytes(b"\x00\xff\xfe\x89PNG\r\n\x1a\n garbage")
    return p


def _run(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, [ln for ln in err.splitlines() if ln.strip()]


def test_every_command_is_covered():
    sub = next(a for a in build_parser()._subparsers._group_actions)
    names = set(sub.choices) - {"experiments"}
    ex = sub.choices["experiments"]._subparsers._group_actions[0].choices
    names |= {f"experiments {n}" for n in ex}
    covered = {k.split(" --")[0] for k in COMMANDS}
    assert names <= covered, sorted(names - covered)


@pytest.mark.parametrize("kind", PATH_KINDS)
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_bad_path_is_one_error_line_and_nothing_written(command, kind, tmp_path, capsys):
    if (command.split(" --")[0], kind) in ACCEPTED:
        pytest.skip("a valid input for this command")
    given_path = _make(kind, tmp_path)
    out = tmp_path / "out_dir"
    out.mkdir()
    argv = [a.replace("{P}", str(given_path)).replace("{T}", str(out)) for a in COMMANDS[command]]
    before = _tree(tmp_path)
    code, lines = _run(capsys, argv)
    assert code == 2, (argv, lines)
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    # names the file (an empty run config is all defaults: the line names the key it lacks)
    assert str(given_path) in lines[0] or (command, kind) == ("train", "empty_file") and "data.root" in lines[0], lines[0]
    assert _tree(tmp_path) == before  # nothing written, nothing half-written
    assert not any(out.iterdir())


# ---- the pipeline's config files --------------------------------------------------------------------
def _pipeline_copy(tmp: Path) -> Path:
    """A copy of configs/pipeline.yaml whose experiment list and scales point at copies in ``tmp``."""
    shutil.copytree(REPO / "configs/scales", tmp / "scales")
    shutil.copy(REPO / "configs/experiments.yaml", tmp / "experiments.yaml")
    shutil.copy(REPO / "configs/paper_tables.yaml", tmp / "paper_tables.yaml")
    cfg = yaml.safe_load((REPO / "configs/pipeline.yaml").read_text())
    cfg.update(experiments=str(tmp / "experiments.yaml"), scales_dir=str(tmp / "scales"),
               paper_tables=str(tmp / "paper_tables.yaml"), runs_dir=str(tmp / "runs"))
    (tmp / "pipeline.yaml").write_text(yaml.safe_dump(cfg))
    return tmp / "pipeline.yaml"


BREAKS = {  # file -> how it is broken
    "pipeline.yaml": ["not_yaml", "a_list", "scale=huge", "seeds=abc", "seeds=-1", "tables=[nosuch]",
                      "experiments=missing", "scales_dir=a_file"],
    "experiments.yaml": ["not_yaml", "a_list", "empty"],
    "scales/mini.yaml": ["not_yaml", "a_list", "empty"],
    "paper_tables.yaml": ["not_yaml", "a_list"],
}
CASES = [(f, b) for f, bs in BREAKS.items() for b in bs]


def _break(tmp: Path, file: str, how: str) -> str:
    """Break ``file`` of the copy; returns a word the error line must hold."""
    path = tmp / file
    if how == "not_yaml":
        path.write_text("scale: [unclosed\n  - : :\n")
        return path.name
    if how == "a_list":
        path.write_text("- 1\n- 2\n")
        return path.name
    if how == "empty":
        path.write_text("")
        return path.name
    key, value = how.split("=")
    cfg = yaml.safe_load(path.read_text())
    if value == "missing":
        cfg[key] = str(tmp / "nope.yaml")
        word = "nope.yaml"
    elif value == "a_file":
        (tmp / "a_file").write_text("x")
        cfg[key] = str(tmp / "a_file")
        word = "a_file"
    else:
        cfg[key] = yaml.safe_load(value)
        word = key
    path.write_text(yaml.safe_dump(cfg))
    return word


@settings(max_examples=EXAMPLES(12), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(CASES),
       command=st.sampled_from([["experiments", "list"], ["experiments", "dvc-yaml", "--out", "{T}/dvc.yaml"],
                                ["tables", "--out", "{T}/tables"], ["experiments", "params", "--out", "{T}/p.json"]]))
def test_a_broken_pipeline_file_is_one_error_line(case, command, tmp_path_factory, capsys):
    assume(not case[1].startswith("tables=") or command[0] == "tables")  # only `tables` reads that key
    tmp = tmp_path_factory.mktemp("pipe")
    cfg = _pipeline_copy(tmp)
    word = _break(tmp, *case)
    out = tmp / "out"
    out.mkdir()
    before = _tree(tmp)
    code, lines = _run(capsys, [a.replace("{T}", str(out)) for a in command] + ["--pipeline-config", str(cfg)])
    assert code == 2, (case, command, lines)
    assert len(lines) == 1 and lines[0].startswith("error: "), (case, lines)
    assert word in lines[0], (case, word, lines[0])
    assert _tree(tmp) == before and not any(out.iterdir())
