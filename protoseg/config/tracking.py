"""The ``tracking`` section of a run config (MLflow experiment, table entry, paper value) and what
MLflow can store as a name."""
from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from typing import Any

from .field_checks import require, short


@dataclass(frozen=True)
class TrackingConfig:
    experiment: str = ""  # MLflow experiment (one per paper table), e.g. "table3"
    entry: str = ""  # the table entry (one MLflow run per entry and seed)
    table: str = ""
    row: str = ""
    column: str = ""
    paper_value: float | None = None
    metric: str = "mIoU"  # the metric compared with paper_value


MAX_NAME_LENGTH = 250  # MLflow's entity name limit (run names, keys); names longer are refused
TRACKED_METRICS = ("mIoU", "aAcc", "mAcc")  # the metrics.json values tracking.metric may name
TRACKING_NAMES = ("experiment", "entry", "table", "row", "column")


def tracking_name_problem(value: Any) -> str | None:
    """What MLflow cannot store about a tracking name (``expected ...`` text), or None if it can."""
    if not isinstance(value, str):
        return f"a string, got {type(value).__name__}"
    bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad is not None:
        return f"a name without control characters (found {bad!r})"
    if len(value) > MAX_NAME_LENGTH:
        return f"at most {MAX_NAME_LENGTH} characters (MLflow's limit for names), got {len(value)}"
    return None


def check_tracking(tr: TrackingConfig, source: str) -> None:
    """The names MLflow gets (experiment, run and tag values) are data: quotes, backslashes,
    spaces, ``=`` and any letters are fine; refused before training are what MLflow (or its SQL
    stores) cannot keep: over ``MAX_NAME_LENGTH`` characters, control characters (NUL, newline,
    tab, ...) and unpaired surrogates."""
    for key in TRACKING_NAMES:
        problem = tracking_name_problem(getattr(tr, key))
        require(problem is None, source, f"tracking.{key}", short(getattr(tr, key)), problem or "")
    require(tr.metric in TRACKED_METRICS, source, "tracking.metric", tr.metric,
            f"one of {', '.join(TRACKED_METRICS)}")
    if tr.paper_value is not None:
        require(math.isfinite(tr.paper_value), source, "tracking.paper_value", tr.paper_value,
                "a finite number (or leave it out)")
