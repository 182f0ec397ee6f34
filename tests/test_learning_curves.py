"""benchmarks/learning_curves.py: the log-line fit and the schedule it gives for a target, on curves
whose answers are known (the training part is the trainer's own, tested elsewhere)."""
from __future__ import annotations

import importlib.util
import math
import sys

import pytest

from engine_helpers import REPO


@pytest.fixture(scope="module")
def curves():
    spec = importlib.util.spec_from_file_location("learning_curves", REPO / "benchmarks" / "learning_curves.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["learning_curves"] = mod
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop("learning_curves", None)


def test_fit_recovers_a_known_log_line(curves):
    # mIoU = 2 + 3 * log2(iter), points at 120 (dropped by fit_from), 240, 480, 960, 1920
    curve = [{"iter": i, "mIoU": 2 + 3 * math.log2(i)} for i in (240, 480, 960, 1920)]
    curve.insert(0, {"iter": 120, "mIoU": 99.0})
    a, b = curves.fit_log_line(curve, fit_from=240)
    assert a == pytest.approx(2.0) and b == pytest.approx(3.0)
    assert curves.iters_for_target(a, b, 2 + 3 * 12) == pytest.approx(4096.0)
    with pytest.raises(ValueError, match="fewer than 2"):
        curves.fit_log_line(curve, fit_from=1920)


def test_flat_or_far_curves_are_not_within_reach(curves):
    assert math.isinf(curves.iters_for_target(5.0, 0.0, 50.0))
    assert math.isinf(curves.iters_for_target(5.0, -1.0, 50.0))
    assert math.isinf(curves.iters_for_target(5.0, 0.07, 50.0))  # 2**643 iterations


def test_summary_marks_reached_and_extrapolated_targets(curves):
    row = {"entry": "t2-segf-b4", "s_per_iter": 0.2,
           "curve": [{"iter": i, "mIoU": 10 * math.log2(i / 120)} for i in (240, 480, 960, 1920)]}
    out = curves.summarise(dict(row), fit_from=240)
    # 10 points per doubling from 0 at 120 iterations: 50 % at 120 * 2**5 = 3840 iterations
    assert out["iters_for_target"] == 3840 and out["extrapolated"] and out["reached_at"] is None
    assert out["main_job_h_at_that_schedule"] == pytest.approx(round(curves.MAIN_JOB_RUNS * 3840 * 0.2 / 2 / 3600, 1))
    row["curve"].append({"iter": 3840, "mIoU": 50.0})
    out = curves.summarise(dict(row), fit_from=240)
    assert out["reached_at"] == 3840 and not out["extrapolated"]


def test_main_job_run_count_is_the_plans(curves):
    """The run count the hours are scaled by is the main job's: the mini plan's runs of one seed."""
    from protoseg.pipeline.experiments import build_plan

    assert curves.MAIN_JOB_RUNS == len(build_plan(scale="mini", seeds=[0]).runs)
