"""The claims table on synthetic metrics files whose answers are known (the real plan, runs in tmp)."""
import json
import math

import pytest
from scipy import stats

from protoseg.pipeline.claims import build_claims, claims_for, evaluate, interval, paired_interval, verdict


def _write(plan, entry, values):
    for seed, v in zip(plan.seeds, values):
        d = tmp = __import__("pathlib").Path(plan.run_dir(plan.entry_run[entry], seed))
        d.mkdir(parents=True, exist_ok=True)
        (tmp / "metrics.json").write_text(json.dumps({"mIoU": v / 100.0}))


def _claim(plan, cid):
    return next(c for c in claims_for(plan) if c.id == cid)


def test_interval_matches_hand_computation():
    mean, lo, hi = paired_interval([12.0, 13.0, 14.5], [10.0, 11.5, 12.0])  # diffs 2.0, 1.5, 2.5
    sd = math.sqrt(((0.0) ** 2 + 0.5 ** 2 + 0.5 ** 2) / 2)  # 0.5
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)  # 4.303 * 0.5 / 1.732 = 1.242
    assert mean == pytest.approx(2.0)
    assert (lo, hi) == pytest.approx((2.0 - half, 2.0 + half))
    assert half == pytest.approx(1.2421, abs=1e-3)
    m, lo1, hi1 = interval([3.0])
    assert m == 3.0 and math.isnan(lo1) and math.isnan(hi1)


def test_verdict_rules():
    assert verdict(1.2, 0.5, 2.0, 3) == "reproduced"
    assert verdict(-1.2, -2.0, -0.5, 3) == "reproduced"
    assert verdict(1.2, -2.0, -0.5, 3) == "contradicted"
    assert verdict(1.2, -0.5, 2.0, 3) == "inconclusive"
    assert verdict(1.2, 0.5, 2.0, 1) == "inconclusive"
    assert verdict(0.0, 0.5, 2.0, 3) == "inconclusive"
    assert verdict(math.nan, 0.5, 2.0, 3) == "inconclusive"


def test_claims_from_metrics_files(plan, tmp_path):
    # Table 1 ResNet-101: ours - FCN = +2.0, +1.5, +2.5 -> reproduced (paper +1.2)
    _write(plan, "t1-ours-r101", [42.0, 41.5, 43.5])
    _write(plan, "t1-fcn-r101", [40.0, 40.0, 41.0])
    row = evaluate(plan, _claim(plan, "table1:t1-ours-r101-vs-t1-fcn-r101"))
    half = stats.t.ppf(0.975, 2) * 0.5 / math.sqrt(3)
    assert row["our_delta"] == pytest.approx(2.0)
    assert (row["ci_lo"], row["ci_hi"]) == pytest.approx((2.0 - half, 2.0 + half))
    assert row["paper_delta"] == pytest.approx(1.2) and row["n_seeds"] == 3 and row["verdict"] == "reproduced"
    # Table 1 HRNet: ours - HRNet = -1, -1.2, -0.8 -> contradicted
    _write(plan, "t1-ours-w48", [40.0, 39.8, 40.2])
    _write(plan, "t1-hrnet-w48", [41.0, 41.0, 41.0])
    assert evaluate(plan, _claim(plan, "table1:t1-ours-w48-vs-t1-hrnet-w48"))["verdict"] == "contradicted"
    # Swin: +1, -1, +0.5 -> inconclusive
    _write(plan, "t1-ours-swin-b", [41.0, 39.0, 40.5])
    _write(plan, "t1-swin-b", [40.0, 40.0, 40.0])
    assert evaluate(plan, _claim(plan, "table1:t1-ours-swin-b-vs-t1-swin-b"))["verdict"] == "inconclusive"
    # MiT-B4: only seed 0 of ours -> n=1, interval n/a, inconclusive
    _write(plan, "t1-ours-b4", [45.0])
    _write(plan, "t1-segf-b4", [40.0, 40.0, 40.0])
    row = evaluate(plan, _claim(plan, "table1:t1-ours-b4-vs-t1-segf-b4"))
    assert row["n_seeds"] == 1 and row["our_delta"] == pytest.approx(5.0) and math.isnan(row["ci_lo"])
    assert row["verdict"] == "inconclusive"
    # Table 5b best K: the paper's own numbers make K=20 best (46.5); ours K=20 too -> reproduced
    for k, base in (("k1", 40.0), ("k5", 41.0), ("k10", 43.0), ("k20", 43.5), ("k50", 41.5)):
        _write(plan, f"t5b-{k}", [base, base + 0.1, base - 0.1])
    row = evaluate(plan, _claim(plan, "table5b:best-t5b"))
    assert row["paper_best"] == "t5b-k20" and row["our_best"] == "t5b-k20" and row["verdict"] == "reproduced"
    # Table 4 gap trend: gap(847) - gap(150) = (18 - 16) - (45 - 45) = +2 each seed (sd 0: interval = point)
    for eid, v in (("t4-ours-k1-847", 18.0), ("t4-param-k1-847", 16.0), ("t4-ours-k1-150", 45.0),
                   ("t4-param-k1-150", 45.0)):
        _write(plan, eid, [v, v + 1.0, v - 1.0])
    row = evaluate(plan, _claim(plan, "table4:gap-trend-k1-150-847"))
    assert row["our_delta"] == pytest.approx(2.0) and row["ci_lo"] == pytest.approx(2.0)
    assert row["paper_delta"] == pytest.approx((18.1 - 16.5) - (45.5 - 45.1))
    # outputs: one csv row per claim, md summary agrees with the counts
    written, counts, rows = build_claims(plan, tmp_path / "tables")
    assert len(rows) == len(claims_for(plan))
    independent = sum(r["independence"] == "independent" for r in rows)  # entries sharing a run: not counted
    assert independent < len(rows)
    assert counts == {"reproduced": 3, "contradicted": 1, "inconclusive": independent - 4}
    import pandas as pd
    df = pd.read_csv(tmp_path / "tables" / "claims.csv")
    assert len(df) == len(rows) and (df["verdict"] == "reproduced").sum() == 3
    md = (tmp_path / "tables" / "claims.md").read_text()
    assert f"**3 reproduced, 1 contradicted, {independent - 4} inconclusive** ({independent} distinct claims" in md
    assert sum(line.startswith("| ") for line in md.splitlines()) == len(rows) + 1  # + header
