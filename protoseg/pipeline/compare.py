"""``protoseg compare-results``: a user's tables beside the committed reference, row by row, with a verdict.

Both sides are the CSV files ``protoseg tables`` writes (``<dir>/tables/*.csv``). Each row of yours is
judged against the reference's per-seed values: its band is the reference mean +- max(3 std, the drift
floor), the floor being the measured cross-machine tolerance (so a row whose seeds agree exactly, std 0,
still allows float drift). Per row:

- ``same``: every seed run on both sides differs by at most the tolerance (the same config and seed on
  another machine gives these numbers up to float drift);
- ``within expected spread``: each of your seeds' values lies inside the band: what another seed or
  another CPU, thread count or torch build gives;
- ``POSSIBLE BUG``: a value of yours outside the band: more than seeds and float drift explain (code,
  data or config differ); the row is named with the machine of both sides (CPU model, thread count
  and torch version, from the rows' provenance columns; ``unknown`` when a table does not record them);
- ``missing``: a row with no value on one side.

When the two sides ran on different CPU models, the list of possible bugs says so: at the mini scale
each backbone is pre-trained once on the machine that runs the pipeline and every seed fine-tunes
from it, so the reference's seed spread does not cover a pre-training that diverged on another CPU
(measured: docs/pipeline.md). Re-running the reference's seeds on your machine tells the two apart.

The tolerance is MEASURED, not guessed, per head: ``benchmarks/bench_drift.py`` trains the same mini
runs with 1 and 2 CPU threads (``results/benchmarks/drift.json``; docs/pipeline.md); the largest mIoU
difference of each head kind, rounded up, is its entry of ``DRIFT_TOLERANCE_PP``. A row's head comes
from the experiment list (its run key); a row of an unknown run gets the largest tolerance.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

# percentage points of mIoU, per head kind: the largest measured drift between 1 and 2 threads
# (results/benchmarks/drift.json, 2026-12-07), rounded up to the next 0.5: prototype head 7.19 pp
# (Swin micro), parametric heads 0.03 pp (MiT micro)
DRIFT_TOLERANCE_PP = {"prototype": 7.5, "parametric": 0.5}
DRIFT_FILE = "results/benchmarks/drift.json"
KEY = ["table", "row", "column"]


class CompareError(ValueError):
    """A results folder without tables, or a table file without the expected columns."""


def head_kind(head: str) -> str:
    """``prototype`` for the paper's nonparametric head, ``parametric`` for the others."""
    return "prototype" if head == "prototype" else "parametric"


def run_tolerances() -> dict[str, float]:
    """Run key -> its drift tolerance (pp, ``DRIFT_TOLERANCE_PP`` of its head), every run of the
    experiment list at both scales."""
    from .experiments import build_plan

    out = {}
    for scale in ("mini", "paper"):
        plan = build_plan(scale=scale, seeds=[0])
        out.update({k: DRIFT_TOLERANCE_PP[head_kind(r.config["model"].get("head", "softmax"))]
                    for k, r in plan.runs.items()})
    return out


@dataclass
class Row:
    table: str
    row: str
    column: str
    reference: dict  # seed -> mIoU (%)
    ours: dict
    delta: float  # ours mean - reference mean
    verdict: str
    reference_machine: str = "unknown"  # CPU model and threads, torch version (the rows' provenance)
    our_machine: str = "unknown"
    tolerance: float = math.nan  # the drift tolerance the row was judged with (pp)


SPREAD_STDS = 3.0  # the band: reference mean +- max(SPREAD_STDS * std, drift floor)
POSSIBLE_BUG = "POSSIBLE BUG"


def per_seed(record: pd.Series) -> dict[int, float]:
    """Seed -> mIoU from the ``mIoU_per_seed`` column (``s0=8.0123;s1=...``); an older table without it
    gives its mean under seed -1 (no seed known)."""
    text = record.get("mIoU_per_seed")
    if isinstance(text, str) and text:
        return {int(k.lstrip("s")): float(v) for k, v in (x.split("=") for x in text.split(";"))}
    mean = record.get("mIoU_mean")
    return {} if mean is None or (isinstance(mean, float) and math.isnan(mean)) else {-1: float(mean)}


def _std(values) -> float:
    v = list(values)
    if len(v) < 2:
        return math.nan
    m = sum(v) / len(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def band(reference: dict, floor: float, ref_std: float | None = None) -> float:
    """Half-width of the expected range around the reference mean: max(3 std, ``floor``); the floor
    alone when the spread is unknown (one seed)."""
    std = _std(reference.values()) if ref_std is None or math.isnan(ref_std) else ref_std
    return floor if math.isnan(std) else max(SPREAD_STDS * std, floor)


def verdict(reference: dict, ours: dict, tolerance: float, ref_std: float | None = None) -> str:
    """``same``, ``within expected spread``, ``POSSIBLE BUG (...)`` or ``missing`` (module docstring)."""
    if not reference or not ours:
        return "missing"
    common = sorted(set(reference) & set(ours) - {-1})
    if common and max(abs(ours[s] - reference[s]) for s in common) <= tolerance:
        return "same"
    ref_mean = sum(reference.values()) / len(reference)
    half = band(reference, tolerance, ref_std)
    seed, value = max(ours.items(), key=lambda sv: abs(sv[1] - ref_mean))
    if abs(value - ref_mean) <= half:
        return "within expected spread"
    which = "mean" if seed < 0 else f"seed {seed}"
    return (f"{POSSIBLE_BUG} ({which}: {value:.2f}, {abs(value - ref_mean):.2f} pp from the reference mean "
            f"{ref_mean:.2f}; band +-{half:.2f} pp)")


CROSS_CPU_NOTE = ("the one-time pre-training of each backbone diverges across CPUs and "
                  "the reference's seeds share one pre-training, so re-run the reference's seeds on your machine "
                  "(snakemake -c1 --config seeds=3 ENTRY) before suspecting the code")
CPU_ISAS = ("AVX512", "AVX2", "DEFAULT", "ZVECTOR", "SVE256")  # torch.backends.cpu.get_cpu_capability() values


def cpu_model(machine_text: str) -> str:
    """The CPU model of a ``machine`` text (``Intel(R) Xeon(R) ... (2 cores, AVX512, OMP_NUM_THREADS=1),
    torch ...``); ``unknown`` stays ``unknown``."""
    return machine_text.split(" (")[0].split(", torch")[0].strip()


def cpu_isa(machine_text: str) -> str | None:
    """The instruction set torch's kernels used, as the ``machine`` text records it (rows written
    before it was recorded: ``None``)."""
    inside = machine_text.split(" (", 1)[1].split(")")[0] if " (" in machine_text else ""
    return next((part.strip() for part in inside.split(",") if part.strip() in CPU_ISAS), None)


def cpu_difference(row) -> str | None:
    """Why the two sides' CPUs may round differently, or ``None`` when they match (or are unknown)."""
    ours, ref = row.our_machine, row.reference_machine
    if "unknown" in (cpu_model(ours), cpu_model(ref)):
        return None
    if cpu_model(ours) != cpu_model(ref):
        return "the CPU models differ"
    isa_ours, isa_ref = cpu_isa(ours), cpu_isa(ref)
    if isa_ours and isa_ref:
        return f"the CPUs' instruction sets differ ({isa_ref} vs {isa_ours})" if isa_ours != isa_ref else None
    return "the CPUs share a name, but a side does not record its instruction set (one name covers several generations)"


def machine(record) -> str:
    """The machine of a table row: its ``machine`` (CPU model, cores, threads) and ``torch`` columns, as
    ``protoseg tables`` records them; ``unknown`` for what is not recorded."""
    if record is None:
        return "unknown"
    parts = []
    for col, label in (("machine", ""), ("torch", "torch ")):
        value = record.get(col)
        parts.append(f"{label}{value}" if isinstance(value, str) and value.strip() else f"{label}unknown")
    return "unknown" if all(p.endswith("unknown") for p in parts) else ", ".join(parts)


NON_ROW_TABLES = ("claims.csv",)


def _read_tables(folder: Path, side: str) -> pd.DataFrame:
    # the paper tables' row files; claims.csv (comparisons, not rows) is compared by `protoseg claims`
    files = sorted(f for f in (folder / "tables").glob("*.csv") if f.name not in NON_ROW_TABLES)
    if not files:
        raise CompareError(f"{folder / 'tables'}: no table CSV files ({side}); build them with `snakemake -c2 tables`")
    frames = []
    for f in files:
        df = pd.read_csv(f, keep_default_na=True, dtype={"column": str})
        missing = [c for c in (*KEY, "mIoU_mean") if c not in df.columns]
        if missing:
            raise CompareError(f"{f}: not a protoseg table (missing columns {missing})")
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def compare(reference_dir: str | Path, ours_dir: str | Path, tolerance: float | None = None,
            per_run: dict[str, float] | None = None) -> list[Row]:
    """Every reference row beside yours. ``tolerance``: one drift tolerance (pp) for every row; else
    each row's from ``per_run`` (run key -> pp; default ``run_tolerances()``), the largest for a run
    not in it."""
    if tolerance is None:
        per_run = run_tolerances() if per_run is None else per_run
    ref = _read_tables(Path(reference_dir), "reference")
    ours = _read_tables(Path(ours_dir), "ours")
    ours_by_key = {tuple(str(r[k]) for k in KEY): r for _, r in ours.iterrows()}
    rows = []
    for _, r in ref.iterrows():
        key = tuple(str(r[k]) for k in KEY)
        o = ours_by_key.get(key)
        ref_values = per_seed(r)
        our_values = per_seed(o) if o is not None else {}
        ref_std = r.get("mIoU_std")
        delta = (sum(our_values.values()) / len(our_values) - sum(ref_values.values()) / len(ref_values)
                 if ref_values and our_values else math.nan)
        tol = tolerance if tolerance is not None else per_run.get(str(r.get("run")), max(DRIFT_TOLERANCE_PP.values()))
        rows.append(Row(*key, reference=ref_values, ours=our_values, delta=delta,
                        verdict=verdict(ref_values, our_values, tol, float(ref_std) if ref_std is not None else None),
                        reference_machine=machine(r), our_machine=machine(o), tolerance=tol))
    return rows


def _seeds_text(values: dict) -> str:
    if not values:
        return "n/a"
    return ", ".join(f"{v:.2f}" if s < 0 else f"s{s} {v:.2f}" for s, v in sorted(values.items()))


def _machines(rows: list[Row], side: str) -> str:
    attr = "reference_machine" if side == "reference" else "our_machine"
    seen = sorted({getattr(r, attr) for r in rows if getattr(r, side)})
    return "; ".join(seen) if seen else "unknown"


def tolerance_text(tolerance: float | None) -> str:
    """``1.0 pp`` for one tolerance, else the measured one per head kind."""
    if tolerance is not None:
        return f"{tolerance} pp"
    return ", ".join(f"{v} pp ({k} head)" for k, v in DRIFT_TOLERANCE_PP.items())


def render(rows: list[Row], tolerance: float | None, reference_dir, ours_dir) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        word = r.verdict.split(" (")[0]
        counts[word] = counts.get(word, 0) + 1
    lines = [f"# {ours_dir} beside the reference {reference_dir}", "",
             f"mIoU in %, per seed. same = every common seed within the cross-machine tolerance "
             f"({tolerance_text(tolerance)}; measured: benchmarks/bench_drift.py, docs/pipeline.md); within expected "
             f"spread = each of your values inside the reference mean +- max({SPREAD_STDS:g} std, the tolerance); "
             f"{POSSIBLE_BUG} = outside it: more than seeds and float drift explain.", "",
             f"Reference machine: {_machines(rows, 'reference')}", f"Your machine: {_machines(rows, 'ours')}", "",
             "| table | row | column | reference | ours | delta | verdict |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        delta = "n/a" if math.isnan(r.delta) else f"{r.delta:+.2f}"
        lines.append(f"| {r.table} | {r.row.replace('|', '/')} | {r.column} | {_seeds_text(r.reference)} | "
                     f"{_seeds_text(r.ours)} | {delta} | {r.verdict} |")
    bugs = [r for r in rows if r.verdict.startswith(POSSIBLE_BUG)]
    if bugs:
        lines += ["", f"{POSSIBLE_BUG}: rows outside the expected spread (check the code, data and config):"]
        lines += [f"- {r.table} / {r.row} / {r.column}: {r.verdict}; reference machine: {r.reference_machine}; "
                  f"your machine: {r.our_machine}" + (f"; {why}: {CROSS_CPU_NOTE}" if (why := cpu_difference(r)) else "")
                  for r in bugs]
    lines += ["", "Summary: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))]
    return "\n".join(lines) + "\n"


def measured_tolerance(path: str | Path = DRIFT_FILE) -> dict[str, float] | None:
    """The largest thread-count drift per head kind of ``benchmarks/bench_drift.py`` (pp), if that file
    exists."""
    p = Path(path)
    if not p.is_file():
        return None
    return {k: float(v) for k, v in json.loads(p.read_text())["max_thread_drift_pp_by_head"].items()}
