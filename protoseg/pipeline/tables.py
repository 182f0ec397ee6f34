"""The reproduced tables: per entry the paper's value, the mean, spread and per-seed values of our mIoU,
the delta, parameter counts (paper vs ours, with a per-row match flag) and the provenance of the runs
(code commit, data hash, torch, device and machine), as Markdown, CSV and LaTeX.

Read only from the runs' ``metrics.json`` and ``run_info.json`` files (the engine's source of truth),
``machine.json`` (written by ``protoseg train``) and the parameter counts file
(``protoseg experiments params``); built with pandas.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from .experiments import Entry, ExperimentError, Plan

COLUMNS = ["table", "row", "column", "paper_mIoU", "mIoU_mean", "mIoU_std", "seeds", "mIoU_per_seed", "delta",
           "paper_params_M", "ours_params_M", "run_params_M", "params_check", "params_note", "run",
           "git_commit", "data_hash", "torch", "device", "machine"]
PROVENANCE = ("git_commit", "data_hash", "torch", "device", "machine")
HEADERS = {"paper_mIoU": "paper mIoU", "mIoU_mean": "ours mIoU (mean)", "mIoU_std": "std",
           "seeds": "seeds", "mIoU_per_seed": "ours per seed", "delta": "delta",
           "paper_params_M": "paper params (M)", "ours_params_M": "ours params (M), paper construction",
           "run_params_M": "params (M) as run", "params_check": "params check", "run": "run key"}
PARAM_TOLERANCE_M = 0.05  # shared/spec/recipes.md (also protoseg.models.paper.PARAM_TOLERANCE_M)
# the discrepancy rows run the release's recipe, not the paper's printed construction
DISCREPANCY_PARAMS = ("the release's recipe builds HRNetV2-W48 with a 3x3 decoder conv (decoder_kernel_size 3; "
                      "the official rows add the projection tail): larger than the paper's printed Table 2 count")


def seed_metrics(plan: Plan, key: str, metric: str = "mIoU") -> dict[int, float]:
    """``metric`` (in %) per seed of run ``key``, for the seeds that have a metrics file."""
    values = {}
    for seed in plan.seeds:
        path = Path(plan.run_dir(key, seed)) / "metrics.json"
        if path.is_file():
            value = json.loads(path.read_text()).get(metric)
            if value is not None:
                values[seed] = 100.0 * float(value)
    return values


def read_metrics(plan: Plan, key: str, metric: str = "mIoU") -> list[float]:
    """``metric`` (in %) of each seed of run ``key`` that has a metrics file."""
    return list(seed_metrics(plan, key, metric).values())


def provenance(plan: Plan, key: str) -> dict[str, str]:
    """Code commit, data hash, torch version, device and machine of the seeds of run ``key`` (each the
    distinct values over seeds and resumed attempts joined by ``;``; empty when no run wrote them)."""
    seen: dict[str, list[str]] = {k: [] for k in PROVENANCE}
    for seed in plan.seeds:
        run_dir = Path(plan.run_dir(key, seed))
        info = _read_json(run_dir / "run_info.json")
        machine = info.get("machine") or _read_json(run_dir / "machine.json")
        values = {k: [info.get(k)] for k in PROVENANCE[:4]}
        # a resumed run lists every attempt's commit and data hash (engine.train.record_attempt)
        for k, many in (("git_commit", "git_commits"), ("data_hash", "data_hashes")):
            if isinstance(info.get(many), list):
                values[k] = [info.get(k), *info[many]]
        values["machine"] = [machine.get("description") if isinstance(machine, dict) else machine]
        for k, vs in values.items():
            for v in vs:
                if v not in (None, "") and str(v) not in seen[k]:
                    seen[k].append(str(v))
    return {k: ";".join(v) for k, v in seen.items()}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def params_check(plan: Plan, entry: Entry, paper: float | None, ours: float) -> tuple[str, str]:
    """(flag, reason) for the parameter count of our paper construction against the paper's print:
    ``exact`` (equal at the printed precision), ``within 0.05M``, ``documented deviation (+x.xxM)``
    with its reason (protoseg/models/paper.py, docs/models.md), ``UNEXPLAINED (+x.xxM)`` or ``n/a``."""
    if paper is None or math.isnan(ours):
        return "n/a", ""
    digits = len(f"{paper}".split(".")[1]) if "." in f"{paper}" else 0
    diff = ours - paper
    if round(ours, digits) == round(paper, digits):
        return "exact", ""
    if abs(diff) <= PARAM_TOLERANCE_M + 1e-9:
        return f"within {PARAM_TOLERANCE_M}M", ""
    reason = _deviation_reason(entry)
    if reason:
        return f"documented deviation ({diff:+.2f}M)", reason
    return f"UNEXPLAINED ({diff:+.2f}M)", "no documented reason"


def _deviation_reason(entry: Entry) -> str:
    if entry.table == "discrepancy":
        return DISCREPANCY_PARAMS
    from protoseg.models.paper import PAPER_BACKBONES, PAPER_ROWS, PARAM_DEVIATIONS

    backbone = {v: k for k, v in PAPER_BACKBONES.items()}.get(entry.model)
    kind = "prototype" if entry.head == "prototype" else "parametric"
    k = 1 if entry.head == "softmax" else int(entry.K)
    for r in PAPER_ROWS:
        if (r.table, r.backbone, r.head) != (entry.table, backbone, kind):
            continue
        if r.table == "table4" and (r.prototypes_per_class, str(r.num_classes)) != (k, str(entry.column)):
            continue
        dev = PARAM_DEVIATIONS.get(r.key)
        return dev.reason if dev else ""
    return ""


def table_frame(plan: Plan, name: str, params: dict | None = None) -> pd.DataFrame:
    """One row per entry of table ``name`` (``table5`` = the four parts 5a-5d)."""
    params = params or {}
    rows = []
    for entry in plan.entries.values():
        if not (entry.table == name or (name == "table5" and entry.table.startswith("table5"))):
            continue
        key = plan.entry_run[entry.id]
        per_seed = seed_metrics(plan, key)
        values = list(per_seed.values())
        n = len(values)
        mean = sum(values) / n if n else math.nan
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan  # 1 seed: n/a
        paper = plan.paper_value(entry)
        counts = params.get(entry.id, {})
        paper_params = plan.paper_params(entry)
        ours_params = _millions(counts.get("paper_construction"))
        check, note = params_check(plan, entry, paper_params, ours_params)
        rows.append({
            "table": entry.table, "row": entry.row, "column": entry.column,
            "paper_mIoU": math.nan if paper is None else paper,
            "mIoU_mean": mean, "mIoU_std": std, "seeds": n,
            "mIoU_per_seed": ";".join(f"s{s}={v:.4f}" for s, v in per_seed.items()),
            "delta": mean - paper if (paper is not None and n) else math.nan,
            "paper_params_M": _or_nan(paper_params), "ours_params_M": ours_params,
            "run_params_M": _millions(counts.get("as_run")),
            "params_check": check, "params_note": note, "run": key, **provenance(plan, key),
        })
    if not rows:
        known = sorted({e.table for e in plan.entries.values()})
        raise ExperimentError(f"tables: no entries for table {name!r}; the experiment list has {', '.join(known)}")
    df = pd.DataFrame(rows, columns=COLUMNS)
    if name == "discrepancy":  # each method flip against the all-paper row, each recipe flip against the release
        base = df.loc[df["row"].str.startswith("paper (all"), "mIoU_mean"]
        df.insert(COLUMNS.index("delta"), "vs_paper_row", df["mIoU_mean"] - (base.iloc[0] if len(base) else math.nan))
        release = df.loc[df["row"].str.startswith("official (release"), "mIoU_mean"]
        df.insert(df.columns.get_loc("delta"), "vs_official_row",
                  df["mIoU_mean"] - (release.iloc[0] if len(release) else math.nan))
    return df


def _millions(count) -> float:
    return math.nan if count is None else count / 1e6


def _or_nan(x) -> float:
    return math.nan if x is None else float(x)


def _fmt(value, digits: int = 1) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


BODY_DROP = ["params_note", *PROVENANCE]  # in the CSV; the Markdown/LaTeX show them below the table


def _formatted(df: pd.DataFrame) -> pd.DataFrame:
    out = df.drop(columns=[c for c in BODY_DROP if c in df.columns])
    for col in out.columns:
        if col.endswith("params_M"):
            out[col] = [_fmt(v, 2) for v in out[col]]
        elif col == "mIoU_per_seed":
            out[col] = [", ".join(f"{float(x.split('=')[1]):.1f}" for x in v.split(";")) if v else "n/a"
                        for v in out[col]]
        elif out[col].dtype.kind == "f":
            out[col] = [_fmt(v, 1) for v in out[col]]
    return out.rename(columns=HEADERS)


def _footer(df: pd.DataFrame) -> list[str]:
    """Provenance (distinct values over the table's runs) and the reasons of documented deviations."""
    lines = []
    for col, label in (("git_commit", "code commit"), ("data_hash", "data hash"), ("torch", "torch"),
                       ("device", "device"), ("machine", "machine")):
        values = sorted({x for v in df[col] for x in str(v).split(";") if x and v == v})
        lines.append(f"- {label}: {', '.join(values) if values else 'n/a (no run_info.json)'}")
    reasons = dict.fromkeys(n for n in df["params_note"] if n)
    for i, reason in enumerate(reasons, 1):
        lines.append(f"- params deviation {i}: {reason}")
    return lines


def to_markdown(df: pd.DataFrame, title: str, note: str) -> str:
    f = _formatted(df.drop(columns=["table"]) if df["table"].nunique() == 1 else df)
    cols = list(f.columns)
    lines = [f"# {title}", "", note, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in f.iterrows():
        lines.append("| " + " | ".join(str(r[c]).replace("|", "/") for c in cols) + " |")
    lines += ["", "Provenance (per run and seed in the CSV):", "", *_footer(df)]
    return "\n".join(lines) + "\n"


def to_latex(df: pd.DataFrame, title: str) -> str:
    f = _formatted(df.drop(columns=["table", "run"]))
    body = f.to_latex(index=False, escape=True, column_format="l" * len(f.columns))
    return f"% {title}\n" + "".join(f"% {line[2:]}\n" for line in _footer(df)) + body


def build_tables(plan: Plan, names, *, out_dir: str | Path, params_file: str | Path | None = None) -> list[Path]:
    """Write ``<out_dir>/<name>.{md,csv,tex}`` for each table name (``table5a``..``d`` -> ``table5``)."""
    params = json.loads(Path(params_file).read_text())["entries"] if params_file else {}
    out_dir = Path(out_dir)
    stems = list(dict.fromkeys("table5" if n.startswith("table5") else n for n in names))
    frames = {stem: table_frame(plan, stem, params) for stem in stems}  # every table known before writing
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for stem in stems:
        df = frames[stem]
        title = _title(plan, stem)
        note = (f"Scale `{plan.scale}`, seeds {plan.seeds}; mIoU in %, mean, sample std (n/a for one seed) "
                f"and the value of each seed; delta = ours - paper (percentage points). Params: the paper's, "
                f"ours for the paper's construction, and the model actually run at this scale; `params check` "
                f"says per row whether ours matches the print (exact at its precision, within "
                f"{PARAM_TOLERANCE_M}M, or a documented deviation whose reason is listed below).")
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
