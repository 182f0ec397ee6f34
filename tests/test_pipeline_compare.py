"""`protoseg compare-results`: real tables built from synthetic metrics files on both sides."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from protoseg.cli import main
from protoseg.pipeline.compare import DRIFT_TOLERANCE_PP, compare, measured_tolerance, verdict
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
    # reference 5.0 +- max(3 * 0.1, 0.3): seed 0 at 7.0 is 2 pp out: more than seeds and drift explain
    assert rows["Ours, ResNet-101"].verdict == ("POSSIBLE BUG (seed 0: 7.00, 2.00 pp from the reference mean "
                                                "5.00; band +-0.30 pp)")
    assert rows["Ours, HRNetV2-W48"].verdict == "missing"
    assert rows["Swin, Swin-Base"].verdict == "missing"  # no value on either side

    assert main(["compare-results", "--reference", str(ref), "--ours", str(ours), "--tolerance", "0.3",
                 "--out", str(tmp_path / "cmp.md")]) == 0
    out = capsys.readouterr().out
    assert "| table2 | FCN, ResNet-101 | mIoU | s0 8.00, s1 8.20, s2 7.80 | s0 8.05 | +0.05 | same |" in out
    assert "Summary: 1 POSSIBLE BUG, 6 missing, 1 same" in out
    # the machine of both sides, from the rows' provenance (the synthetic runs record none: unknown)
    assert "Reference machine: unknown" in out and "Your machine: unknown" in out
    assert "- table2 / Ours, ResNet-101 / mIoU: POSSIBLE BUG" in out
    assert (tmp_path / "cmp.md").read_text() == out
    capsys.readouterr()
    assert main(["compare-results", "--reference", str(ref), "--ours", str(ours), "--tolerance", "0.3", "--check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 row(s)" in err[0] and "possible bugs: table2 Ours, ResNet-101" in err[0]


def test_other_seeds_are_judged_by_the_seed_spread():
    ref = {0: 8.0, 1: 8.2, 2: 7.8}  # mean 8.0, std 0.2: band +-0.6 (3 std above the 0.1 floor)
    assert verdict(ref, {5: 8.55}, tolerance=0.1) == "within expected spread"
    assert verdict(ref, {5: 8.65}, tolerance=0.1) == ("POSSIBLE BUG (seed 5: 8.65, 0.65 pp from the reference "
                                                      "mean 8.00; band +-0.60 pp)")
    # a common seed beyond the tolerance but inside the band: float drift of another machine, not a bug
    assert verdict(ref, {0: 8.5}, tolerance=0.1) == "within expected spread"
    # each seed of ours is judged: one seed out is enough
    assert verdict(ref, {3: 8.1, 4: 6.9}, tolerance=0.1).startswith("POSSIBLE BUG (seed 4: 6.90")


def test_zero_spread_has_the_drift_floor():
    """Seeds that agree exactly (std 0) still allow the measured cross-machine drift."""
    ref = {0: 5.0, 1: 5.0, 2: 5.0}
    assert verdict(ref, {0: 6.4}, tolerance=1.5) == "same"  # the same seed within the drift
    assert verdict(ref, {5: 6.4}, tolerance=1.5) == "within expected spread"
    assert verdict(ref, {0: 6.6}, tolerance=1.5).startswith("POSSIBLE BUG")
    assert verdict({-1: 5.0}, {0: 6.6}, tolerance=1.5).startswith("POSSIBLE BUG")  # one value: the floor alone
    assert verdict(ref, {}, tolerance=1.5) == "missing"


def _with_machine(folder, machine, torch):
    import pandas as pd

    for f in (folder / "tables").glob("*.csv"):
        df = pd.read_csv(f, dtype={"column": str})
        df["machine"], df["torch"] = machine, torch
        df.to_csv(f, index=False)


def test_a_possible_bug_names_the_machines_of_both_sides(tmp_path, capsys):
    """Synthetic tables: a reference from one CPU and a user's run from another. Rows inside
    mean +- max(3 std, floor) pass whatever the machine; a row outside is named with both machines."""
    ref = _tables(tmp_path, "ref", [0, 1, 2], {"t2-fcn-r101": [0.080, 0.082, 0.078],  # 8.0 +- 0.6
                                               "t2-ours-r101": [0.140, 0.150, 0.130],  # 14.0 +- 3.0
                                               "t2-ours-w48": [0.120, 0.120, 0.120]})  # 12.0, std 0: floor
    ours = _tables(tmp_path, "ours", [0], {"t2-fcn-r101": [0.0830],  # +0.3 pp: drift
                                           "t2-ours-r101": [0.1650],  # +2.5 pp, inside 3 std
                                           "t2-ours-w48": [0.1400]})  # +2.0 pp > the 1.5 floor
    _with_machine(ref, "Intel(R) Xeon(R) Processor (2 cores, OMP_NUM_THREADS=1)", "2.13.0+cpu")
    _with_machine(ours, "AMD EPYC 7B13 (16 cores, OMP_NUM_THREADS=2)", "2.13.0+cpu")
    rows = {r.row: r for r in compare(ref, ours, tolerance=1.5)}
    assert rows["FCN, ResNet-101"].verdict == "same"
    assert rows["Ours, ResNet-101"].verdict == "within expected spread"
    assert rows["Ours, HRNetV2-W48"].verdict.startswith("POSSIBLE BUG (seed 0: 14.00, 2.00 pp")
    assert rows["Ours, HRNetV2-W48"].our_machine == "AMD EPYC 7B13 (16 cores, OMP_NUM_THREADS=2), torch 2.13.0+cpu"
    assert main(["compare-results", "--reference", str(ref), "--ours", str(ours), "--tolerance", "1.5", "--check"]) == 2
    cap = capsys.readouterr()
    assert "Reference machine: Intel(R) Xeon(R) Processor (2 cores, OMP_NUM_THREADS=1), torch 2.13.0+cpu" in cap.out
    assert ("- table2 / Ours, HRNetV2-W48 / mIoU: POSSIBLE BUG (seed 0: 14.00, 2.00 pp from the reference mean "
            "12.00; band +-1.50 pp); reference machine: Intel(R) Xeon(R) Processor (2 cores, OMP_NUM_THREADS=1), "
            "torch 2.13.0+cpu; your machine: AMD EPYC 7B13 (16 cores, OMP_NUM_THREADS=2), torch 2.13.0+cpu; "
            "the CPU models differ: the one-time pre-training") in cap.out
    (line,) = cap.err.strip().splitlines()
    assert line.startswith("error: 1 row(s)") and "Ours, HRNetV2-W48" in line


def test_the_cross_cpu_note_only_where_the_cpu_models_differ(tmp_path, capsys):
    """Same CPU model, other thread count: a possible bug carries no pre-training note."""
    ref = _tables(tmp_path, "ref", [0, 1, 2], {"t2-ours-w48": [0.120, 0.121, 0.119]})
    ours = _tables(tmp_path, "ours", [0], {"t2-ours-w48": [0.1400]})
    _with_machine(ref, "AMD EPYC 7B13 (2 cores, OMP_NUM_THREADS=1)", "2.13.0+cpu")
    _with_machine(ours, "AMD EPYC 7B13 (16 cores, OMP_NUM_THREADS=2)", "2.13.0+cpu")
    assert main(["compare-results", "--reference", str(ref), "--ours", str(ours), "--tolerance", "1.5"]) == 0
    out = capsys.readouterr().out
    assert "- table2 / Ours, HRNetV2-W48 / mIoU: POSSIBLE BUG" in out and "CPU models differ" not in out
    _with_machine(ours, "Intel(R) Xeon(R) Processor @ 2.80GHz (2 cores, OMP_NUM_THREADS=1)", "2.13.0+cpu")
    assert main(["compare-results", "--reference", str(ref), "--ours", str(ours), "--tolerance", "1.5"]) == 0
    assert "; the CPU models differ: the one-time pre-training" in capsys.readouterr().out


def test_one_cpu_name_with_two_instruction_sets_is_named(tmp_path, capsys):
    """"AMD EPYC" covers generations whose torch kernels differ (AVX2 / AVX512): measured, the same
    pre-training gives ResNet 23.9 / 23.6 and Swin 19.6 / 17.3 on two such VMs."""
    from protoseg.engine.provenance import machine_description
    from protoseg.pipeline.compare import cpu_isa

    desc = machine_description()["description"]
    assert cpu_isa(desc) == machine_description()["cpu_capability"] and cpu_isa(desc) is not None
    assert cpu_isa("AMD EPYC (2 cores, OMP_NUM_THREADS=1), torch 2.13.0+cpu") is None
    ref = _tables(tmp_path, "ref", [0, 1, 2], {"t2-ours-w48": [0.120, 0.121, 0.119]})
    ours = _tables(tmp_path, "ours", [0], {"t2-ours-w48": [0.1400]})
    _with_machine(ref, "AMD EPYC (2 cores, AVX2, OMP_NUM_THREADS=1)", "2.13.0+cpu")
    _with_machine(ours, "AMD EPYC (2 cores, AVX512, OMP_NUM_THREADS=1)", "2.13.0+cpu")
    assert main(["compare-results", "--reference", str(ref), "--ours", str(ours), "--tolerance", "1.5"]) == 0
    assert "; the CPUs' instruction sets differ (AVX2 vs AVX512): the one-time pre-training" in capsys.readouterr().out
    _with_machine(ref, "AMD EPYC (2 cores, OMP_NUM_THREADS=1)", "2.13.0+cpu")  # written before the ISA was
    assert main(["compare-results", "--reference", str(ref), "--ours", str(ours), "--tolerance", "1.5"]) == 0
    assert "a side does not record its instruction set" in capsys.readouterr().out
    _with_machine(ref, "AMD EPYC (2 cores, AVX512, OMP_NUM_THREADS=2)", "2.13.0+cpu")
    assert main(["compare-results", "--reference", str(ref), "--ours", str(ours), "--tolerance", "1.5"]) == 0
    out = capsys.readouterr().out
    assert "POSSIBLE BUG" in out and "pre-training diverges" not in out


def test_each_row_is_judged_with_the_measured_drift_of_its_head(tmp_path):
    """No --tolerance: a softmax row gets the parametric heads' measured drift, a prototype-head row
    the prototype head's (larger: its nearest-prototype assignments amplify rounding)."""
    ref = _tables(tmp_path, "ref", [0, 1, 2], {"t2-fcn-r101": [0.080, 0.080, 0.080],
                                               "t2-ours-r101": [0.050, 0.050, 0.050]})
    ours = _tables(tmp_path, "ours", [3], {"t2-fcn-r101": [0.088], "t2-ours-r101": [0.090]})
    rows = {r.row: r for r in compare(ref, ours)}
    assert rows["FCN, ResNet-101"].tolerance == DRIFT_TOLERANCE_PP["parametric"] == 0.5
    assert rows["FCN, ResNet-101"].verdict.startswith("POSSIBLE BUG (seed 3: 8.80, 0.80 pp")
    assert rows["Ours, ResNet-101"].tolerance == DRIFT_TOLERANCE_PP["prototype"] == 7.5
    assert rows["Ours, ResNet-101"].verdict == "within expected spread"  # +4 pp: inside the 7.5 pp floor
    # a run the experiment list does not know (another list): the largest tolerance
    assert {r.tolerance for r in compare(ref, ours, per_run={})} == {7.5}


def test_the_tolerances_are_the_committed_measurement_rounded_up():
    """DRIFT_TOLERANCE_PP is the largest drift per head in results/benchmarks/drift.json, rounded up to
    the next 0.5 pp: re-measuring without updating the constant (or the reverse) fails here."""
    measured = measured_tolerance(Path(__file__).resolve().parents[1] / "results/benchmarks/drift.json")
    assert set(measured) == set(DRIFT_TOLERANCE_PP)
    for head, drift in measured.items():
        assert DRIFT_TOLERANCE_PP[head] == math.floor(drift / 0.5) * 0.5 + 0.5, (head, drift)


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
