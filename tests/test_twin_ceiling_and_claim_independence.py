"""The Bayes ceiling of a twin (hand-built counts with known answers, and real twins) and the
independence of claims whose entries share runs (synthetic plans and the real mini plan)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from protoseg.data.ceiling import CellCounter, ceiling_miou
from protoseg.data.synth import ALPHABET_CELLS, ALPHABET_SLOTS, NUM_MODES, Region, cell_of
from protoseg.pipeline.claims import INDEPENDENT, SAME_RUN, Claim, counts, independence, run_signature


def test_ceiling_of_classes_that_own_their_cells_is_100():
    counts_ = np.zeros((6, 2))
    counts_[0, 0], counts_[1, 0], counts_[2, 1] = 10, 5, 7
    assert ceiling_miou(counts_) == pytest.approx(100.0)


def test_ceiling_of_a_shared_cell_by_hand():
    # cell 0: class 0 x 30, class 1 x 10 -> predicts 0; cell 1: class 1 x 20 -> predicts 1
    # class 0: TP 30, GT 30, predicted 40 -> IoU 30/40; class 1: TP 20, GT 30, predicted 20 -> 20/30
    counts_ = np.array([[30.0, 10.0], [0.0, 20.0]])
    assert ceiling_miou(counts_) == pytest.approx(100.0 * (30 / 40 + 20 / 30) / 2)


def test_a_class_the_oracle_never_predicts_counts_as_zero():
    # cell 0: class 0 x 9, class 1 x 1: class 1 is in the ground truth, never predicted -> IoU 0
    assert ceiling_miou(np.array([[9.0, 1.0]])) == pytest.approx(100.0 * (9 / 10 + 0.0) / 2)


def test_cell_counter_maps_raw_values_and_skips_void():
    counter = CellCounter()
    regions = [Region(0, 5, 0, []), Region(7, 1, 2, []), Region(8, 1 + ALPHABET_SLOTS, 2, [])]
    index = np.array([[0, 1], [1, 2]])  # void x1, value 7 x2, value 8 x1 (same cell as value 7)
    counter.add("val", regions, index)
    m = counter.matrix("val", {7: 0, 8: 1}, 2)
    assert m.shape == (ALPHABET_CELLS, 2) and m.sum() == 3
    assert cell_of(1, 2) == cell_of(1 + ALPHABET_SLOTS, 2)  # keys one alphabet apart share cells
    assert m[cell_of(1, 2)].tolist() == [2, 1]
    assert ceiling_miou(m) == pytest.approx(100.0 * (2 / 3 + 0.0) / 2)


def test_twin_classes_own_distinct_cells_below_the_alphabet_size():
    cells = {cell_of(k, m) for k in range(ALPHABET_SLOTS) for m in range(NUM_MODES)}
    assert len(cells) == ALPHABET_CELLS  # 360 classes x 3 modes fill the alphabet exactly once


def test_make_mini_writes_the_ceiling(tmp_path):
    from protoseg.data.mini import make_mini

    out = make_mini("cityscapes", tmp_path / "cs", seed=0, n_train=20, n_val=10)
    assert out["bayes_ceiling"] == {"19": 100.0}  # 19 classes on their own cells
    assert json.loads((tmp_path / "cs" / "bayes_ceiling.json").read_text()) == {"19": 100.0}


# ---- claims whose entries share runs --------------------------------------------------------------

def _plan(entry_run: dict[str, str]):
    return SimpleNamespace(entry_run=entry_run)


def _diff(cid, a, b):
    return Claim(cid, "t", cid, terms=((a, 1.0), (b, -1.0)))


def test_a_claim_on_one_run_is_same_run():
    plan = _plan({"mu0": "r1", "mu0.9": "r1", "mu0.999": "r2"})
    claims = [_diff("c1", "mu0.999", "mu0"), _diff("c2", "mu0.999", "mu0.9"), _diff("c3", "mu0", "mu0.9")]
    assert run_signature(plan, claims[2]) == ()
    assert independence(plan, claims) == [INDEPENDENT, "duplicate of c1", SAME_RUN]


def test_reversed_comparisons_are_duplicates_and_best_of_one_run_is_same_run():
    plan = _plan({"a": "r1", "b": "r2", "c": "r2"})
    claims = [_diff("x", "a", "b"), _diff("y", "c", "a"), Claim("best", "t", "best", best_of=("b", "c"))]
    assert independence(plan, claims) == [INDEPENDENT, "duplicate of x", SAME_RUN]


def test_counts_take_independent_claims_only():
    rows = [{"verdict": "reproduced", "independence": INDEPENDENT},
            {"verdict": "reproduced", "independence": "duplicate of x"},
            {"verdict": "inconclusive", "independence": SAME_RUN},
            {"verdict": "contradicted", "independence": INDEPENDENT}]
    assert counts(rows) == {"reproduced": 1, "contradicted": 1, "inconclusive": 0}


def test_real_plan_marks_shared_runs(plan):
    from protoseg.pipeline.claims import claims_for

    claims = claims_for(plan)
    status = dict(zip((c.id for c in claims), independence(plan, claims)))
    sigs = [run_signature(plan, c) for c, s in zip(claims, status.values()) if s == INDEPENDENT]
    assert len(sigs) == len(set(sigs)) and all(sigs)  # independent claims compare distinct run sets
    for c in claims:  # every non-independent claim really shares its runs
        if status[c.id] == SAME_RUN:
            assert run_signature(plan, c) == ()
        elif status[c.id] != INDEPENDENT:
            first = status[c.id].removeprefix("duplicate of ")
            assert run_signature(plan, c) == run_signature(plan, next(d for d in claims if d.id == first))
