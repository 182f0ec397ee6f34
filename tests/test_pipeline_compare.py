"""`protoseg compare-results`: real tables built from synthetic metrics files on both sides."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from protoseg.cli import main
from protoseg.pipeline.compare import compare, verdict
from protoseg.pipeline.experiments import build_plan
from protoseg.pipeline.tables import build_tables


def _tables(tmp_path, name, seeds, values):
    plan = build_plan(scale="mini", seeds=seeds, runs_dir=str(tmp_path / name / "runs"))
    for entry, per_seed in values.items():
        for seed, v in zip(seeds, per_seed):
            d = Path(plan.run_dir(plan.entry_run[entry], seed))
            d.mkdir(parents=True, exist_ok=True)
            (d / "metrics.json").write_text(json.dumps({"mIoU": v}))
    build_tables(plan, ["table2"], out_dir=tmp_path / name / "tables")
    return tmp_path / name


def test_verdicts_row_by_row(tmp_path, capsys):
    ref = _tables(tmp_path, "ref", [0, 1, 2], {"t2-fcn-r101": [0.080, 0.082, 0.078],
                                               "t2-ours-r101": [0.050, 0.051, 0.049],
                                               "t2-ours-w48": [0.030, 0.032, 0.031]})
    ours = _tables(tmp_path, "ours", [0], {"t2-fcn-r101": [0.0805],  # seed 0: +0.05 pp, machine drift
                                           "t2-ours-r101": [0.070]})  # seed 0: +2.0 pp, a real change
    rows = {r.row: r for r in compare(ref, ours, tolerance=0.3)}
    assert rows["FCN, ResNet-101"].verdict == "same"
    assert rows["FCN, ResNet-101"].reference == pytest.approx({0: 8.0, 1: 8.2, 2: 7.8})
    assert rows["FCN, ResNet-101"].delta == pytest.approx(8.05 - 8.0)
    assert rows["Ours, ResNet-101"].verdict == "DIFFERS (seed 0: 2.00 pp)"
    assert rows["Ours, HRNetV2-W48"].verdict == "missing"
    assert rows["Swin, Swin-Base"].verdict == "missing"  # no value on either side

    assert main(["compare-results", "--reference", str(ref), "--ours", str(ours), "--tolerance", "0.3",
                 "--out", str(tmp_path / "cmp.md")]) == 0
    out = capsys.readouterr().out
    assert "| table2 | FCN, ResNet-101 | mIoU | s0 8.00, s1 8.20, s2 7.80 | s0 8.05 | +0.05 | same |" in out
    assert "Summary: 1 DIFFERS, 6 missing, 1 same" in out
    assert (tmp_path / "cmp.md").read_text() == out
    capsys.readouterr()
    assert main(["compare-results", "--reference", str(ref), "--ours", str(ours), "--check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 row(s)" in err[0] and "table2 Ours, ResNet-101" in err[0]


def test_other_seeds_are_judged_by_the_seed_spread():
    ref = {0: 8.0, 1: 8.2, 2: 7.8}  # std 0.2
    assert verdict(ref, {5: 8.45}, tolerance=0.1) == "within seed spread"  # |8.45 - 8.0| <= 2*0.2 + 0.1
    assert verdict(ref, {5: 8.6}, tolerance=0.1) == "outside seed spread (band 0.50 pp)"


def test_a_folder_without_tables_is_a_clear_error(tmp_path, capsys):
    assert main(["compare-results", "--reference", str(tmp_path / "nothing"), "--ours", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "nothing/tables: no table CSV files (reference)" in err


def test_the_claims_table_beside_the_row_tables_is_not_a_row_table(tmp_path):
    """The main job writes claims.csv next to the tables; compare-results reads only the row tables."""
    from protoseg.pipeline.claims import build_claims

    values = {"t2-fcn-r101": [0.080, 0.082, 0.078], "t2-ours-r101": [0.050, 0.051, 0.049]}
    ref = _tables(tmp_path, "ref", [0, 1, 2], values)
    ours = _tables(tmp_path, "ours", [0, 1, 2], values)
    plan = build_plan(scale="mini", seeds=[0, 1, 2], runs_dir=str(ours / "runs"))
    build_claims(plan, out_dir=ours / "tables")
    assert (ours / "tables" / "claims.csv").is_file()
    rows = {r.row: r for r in compare(ref, ours)}
    assert rows["FCN, ResNet-101"].verdict == "same"
    assert {r.table for r in rows.values()} == {"table2"}
