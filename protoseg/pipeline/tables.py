"""The reproduced tables: per entry the paper's value, the mean and spread of our mIoU over seeds, the
delta, and parameter counts (paper vs ours), as Markdown, CSV and LaTeX.

Read only from the runs' ``metrics.json`` files (the engine's source of truth) and the parameter
counts file (``protoseg experiments params``); built with pandas.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from .experiments import Plan

COLUMNS = ["table", "row", "column", "paper_mIoU", "mIoU_mean", "mIoU_std", "seeds", "delta",
           "paper_params_M", "ours_params_M", "run_params_M", "run"]
HEADERS = {"paper_mIoU": "paper mIoU", "mIoU_mean": "ours mIoU (mean)", "mIoU_std": "std",
           "seeds": "seeds", "delta": "delta", "paper_params_M": "paper params (M)",
           "ours_params_M": "ours params (M), paper construction", "run_params_M": "params (M) as run",
           "run": "run key"}


def read_metrics(plan: Plan, key: str, metric: str = "mIoU") -> list[float]:
    """``metric`` (in %) of each seed of run ``key`` that has a metrics file."""
    values = []
    for seed in plan.seeds:
        path = Path(plan.run_dir(key, seed)) / "metrics.json"
        if path.is_file():
            value = json.loads(path.read_text()).get(metric)
            if value is not None:
                values.append(100.0 * float(value))
    return values


def table_frame(plan: Plan, name: str, params: dict | None = None) -> pd.DataFrame:
    """One row per entry of table ``name`` (``table5`` = the four parts 5a-5d)."""
    params = params or {}
    rows = []
    for entry in plan.entries.values():
        if not (entry.table == name or (name == "table5" and entry.table.startswith("table5"))):
            continue
        key = plan.entry_run[entry.id]
        values = read_metrics(plan, key)
        n = len(values)
        mean = sum(values) / n if n else math.nan
        std = (math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else (0.0 if n else math.nan))
        paper = plan.paper_value(entry)
        counts = params.get(entry.id, {})
        rows.append({
            "table": entry.table, "row": entry.row, "column": entry.column,
            "paper_mIoU": math.nan if paper is None else paper,
            "mIoU_mean": mean, "mIoU_std": std, "seeds": n,
            "delta": mean - paper if (paper is not None and n) else math.nan,
            "paper_params_M": _or_nan(plan.paper_params(entry)),
            "ours_params_M": _millions(counts.get("paper_construction")),
            "run_params_M": _millions(counts.get("as_run")),
            "run": key,
        })
    if not rows:
        raise ValueError(f"no entries for table {name!r}")
    df = pd.DataFrame(rows, columns=COLUMNS)
    if name == "discrepancy":  # each method flip against the all-paper row, each recipe flip against the release
        base = df.loc[df["row"].str.startswith("paper (all"), "mIoU_mean"]
        df.insert(7, "vs_paper_row", df["mIoU_mean"] - (base.iloc[0] if len(base) else math.nan))
        release = df.loc[df["row"].str.startswith("official (release"), "mIoU_mean"]
        df.insert(8, "vs_official_row", df["mIoU_mean"] - (release.iloc[0] if len(release) else math.nan))
    return df


def _millions(count) -> float:
    return math.nan if count is None else count / 1e6


def _or_nan(x) -> float:
    return math.nan if x is None else float(x)


def _fmt(value, digits: int = 1) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _formatted(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in out.columns:
        if col.endswith("params_M"):
            out[col] = [_fmt(v, 2) for v in out[col]]
        elif out[col].dtype.kind == "f":
            out[col] = [_fmt(v, 1) for v in out[col]]
    return out.rename(columns=HEADERS)


def to_markdown(df: pd.DataFrame, title: str, note: str) -> str:
    f = _formatted(df.drop(columns=["table"]) if df["table"].nunique() == 1 else df)
    cols = list(f.columns)
    lines = [f"# {title}", "", note, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in f.iterrows():
        lines.append("| " + " | ".join(str(r[c]).replace("|", "/") for c in cols) + " |")
    return "\n".join(lines) + "\n"


def to_latex(df: pd.DataFrame, title: str) -> str:
    f = _formatted(df.drop(columns=["table", "run"]))
    body = f.to_latex(index=False, escape=True, column_format="l" * len(f.columns))
    return f"% {title}\n{body}"


def build_tables(plan: Plan, names, *, out_dir: str | Path, params_file: str | Path | None = None) -> list[Path]:
    """Write ``<out_dir>/<name>.{md,csv,tex}`` for each table name (``table5a``..``d`` -> ``table5``)."""
    params = json.loads(Path(params_file).read_text())["entries"] if params_file else {}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stems = list(dict.fromkeys("table5" if n.startswith("table5") else n for n in names))
    written = []
    for stem in stems:
        df = table_frame(plan, stem, params)
        title = _title(plan, stem)
        note = (f"Scale `{plan.scale}`, seeds {plan.seeds}; mIoU in %, mean and sample std over seeds; "
                f"delta = ours - paper (percentage points). Params: the paper's, ours for the paper's "
                f"construction (must match within 0.05M), and the model actually run at this scale.")
        if plan.scale == "mini":
            note += (" Mini scale: miniature synthetic twins, small backbones, a few dozen CPU iterations:"
                     " the numbers check the pipeline and directions, not the paper's values.")
        for ext, text in (("md", to_markdown(df, title, note)), ("csv", df.to_csv(index=False)),
                          ("tex", to_latex(df, title))):
            path = out_dir / f"{stem}.{ext}"
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text(text)
            tmp.replace(path)
            written.append(path)
    return written


def _title(plan: Plan, stem: str) -> str:
    if stem == "discrepancy":
        return "Discrepancy table: paper vs official release, one difference flipped at a time (HRNet, Cityscapes val)"
    if stem == "smoke":
        return "Smoke table (pipeline check, one tiny run)"
    if stem == "table5":
        return "Table 5. Ablations (a: objective, b: K, c: momentum, d: distance), ADE20K val"
    t = plan.paper_tables.get(stem, {})
    return t.get("title", stem)
