"""The claims table: every comparison the paper makes, as a difference of table entries paired by
seed at this scale, with the paper's delta, our mean delta, a paired 95% t-interval and a verdict.

A claim is data (``Claim``: a linear combination of entry ids, or a "best of" over entries);
``claims_for(plan)`` lists those whose entries are in the plan. The statistics are pure functions:

* ``interval(d)`` / ``paired_interval(a, b)``: mean of the per-seed differences and its 95% interval
  ``mean +- t_{0.975, n-1} * sd / sqrt(n)`` (scipy.stats.t); n < 2: interval n/a (NaN).
* ``verdict(paper_delta, lo, hi, n)``: ``reproduced`` (interval excludes 0 on the paper's side),
  ``contradicted`` (excludes 0 on the other side), ``inconclusive`` (interval contains 0, n < 2,
  or the paper states no delta or a delta of exactly 0: no sign to reproduce).

"Best of" rows (Table 5b K, 5c mu, Table 8 lambda1/lambda2): ``reproduced`` when our best entry is the
paper's best (n >= 2); otherwise the paired delta ours[paper's best] - ours[our best] decides:
interval containing 0 -> ``inconclusive``, excluding 0 -> ``contradicted``.
Independence (``independence``): entries whose composed configs are identical are one run, so two
claims can be one comparison of runs, and a claim can compare a run with itself. Each claim's runs
with their summed coefficients form its signature: an empty signature (both sides one run) is
``same run``; a signature already seen (up to sign) is ``duplicate of <claim id>``; the rest are
``independent``, and only those are counted.
Units: mIoU points (%). Read only from the runs' ``metrics.json`` files.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from scipy import stats

from .experiments import Plan

VERDICTS = ("reproduced", "contradicted", "inconclusive")
COLUMNS = ["claim_id", "table", "claim", "comparison", "paper_delta", "our_delta", "ci_lo", "ci_hi",
           "n_seeds", "verdict", "paper_best", "our_best", "independence"]
INDEPENDENT = "independent"
SAME_RUN = "same run"
PAIRS_TABLES = ("table1", "table2", "table3", "table6", "table7")


@dataclass(frozen=True)
class Claim:
    id: str
    table: str
    text: str
    terms: tuple = ()  # ((entry id, coefficient), ...): delta = sum coef * mIoU(entry)
    best_of: tuple = ()  # entry ids: the paper's best vs ours

    def entries(self) -> tuple:
        return self.best_of or tuple(e for e, _ in self.terms)


# ---------------------------------------------------------------------------------------------------
# statistics (pure)

def interval(diffs, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi) of paired differences; lo/hi NaN when fewer than 2 values."""
    d = [float(x) for x in diffs]
    n = len(d)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = sum(d) / n
    if n < 2:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def paired_interval(a, b, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi) of a[i] - b[i] (the same seeds in the same order)."""
    if len(a) != len(b):
        raise ValueError(f"paired_interval: {len(a)} vs {len(b)} values; expected the same seeds")
    return interval([x - y for x, y in zip(a, b)], level)


def verdict(paper_delta, lo: float, hi: float, n: int) -> str:
    if n < 2 or paper_delta is None or math.isnan(paper_delta) or paper_delta == 0 \
            or math.isnan(lo) or math.isnan(hi):
        return "inconclusive"
    if lo > 0:
        return "reproduced" if paper_delta > 0 else "contradicted"
    if hi < 0:
        return "reproduced" if paper_delta < 0 else "contradicted"
    return "inconclusive"


def best_verdict(paper_best: str, our_best: str, lo: float, hi: float, n: int) -> str:
    if n < 2:
        return "inconclusive"
    if paper_best == our_best:
        return "reproduced"
    if math.isnan(lo) or math.isnan(hi) or lo <= 0 <= hi:
        return "inconclusive"
    return "contradicted"


# ---------------------------------------------------------------------------------------------------
# the claims, from the plan's entries

def _diff(cid, table, text, a, b):
    return Claim(cid, table, text, terms=((a, 1.0), (b, -1.0)))


def claims_for(plan: Plan) -> list[Claim]:
    """Every claim whose entries are all in ``plan`` (missing tables or entries are skipped)."""
    return (_pair_claims(plan.entries) + _table4_claims(plan.entries) + _table5_claims(plan)
            + _best(plan, "table8", "t8-lambda1-", "the best lambda1 (PPC)")  # Table 8: the best lambdas
            + _best(plan, "table8", "t8-lambda2-", "the best lambda2 (PPD)")
            + _discrepancy_claims(plan.entries))


def _pair_claims(E: dict) -> list[Claim]:
    """Tables 1-3, 6, 7: nonparametric (prototype head) vs the parametric baseline of the same backbone."""
    out: list[Claim] = []
    for table in PAIRS_TABLES:
        ents = [e for e in E.values() if e.table == table]
        for ours in (e for e in ents if e.head == "prototype"):
            base = next((e for e in ents if e.head == "softmax" and e.model == ours.model
                         and e.dataset == ours.dataset), None)
            if base is not None:
                out.append(_diff(f"{table}:{ours.id}-vs-{base.id}", table,
                                 f"{ours.row} beats {base.row} ({ours.dataset})", ours.id, base.id))
    return out


def _table4_claims(E: dict) -> list[Claim]:
    """Table 4: the gap as the vocabulary grows, its trend, and K=10."""
    out: list[Claim] = []
    cols = [e.column for e in E.values() if e.id.startswith("t4-ours-k1-")]
    for k in ("k1", "k10"):
        for c in cols:
            a, b = f"t4-ours-{k}-{c}", f"t4-param-{k}-{c}"
            if a in E and b in E:
                out.append(_diff(f"table4:gap-{k}-{c}", "table4",
                                 f"nonparametric minus parametric, {k.upper()}, top-{c} classes", a, b))
    if len(cols) >= 2:
        lo_c, hi_c = cols[0], cols[-1]
        ids = [f"t4-ours-k1-{hi_c}", f"t4-param-k1-{hi_c}", f"t4-ours-k1-{lo_c}", f"t4-param-k1-{lo_c}"]
        if all(i in E for i in ids):
            out.append(Claim(f"table4:gap-trend-k1-{lo_c}-{hi_c}", "table4",
                             f"the K=1 gap grows from {lo_c} to {hi_c} classes: gap({hi_c}) - gap({lo_c})",
                             terms=tuple(zip(ids, (1.0, -1.0, -1.0, 1.0)))))
    return out


def _table5_claims(plan: Plan) -> list[Claim]:
    """Table 5: each loss term's contribution (a), K (b), the momentum (c), the distance (d)."""
    E = plan.entries
    out: list[Claim] = []
    for a, b, text in (("t5a-ce-ppc", "t5a-ce", "PPC helps: CE+PPC - CE"),
                       ("t5a-ce-ppd", "t5a-ce", "PPD helps: CE+PPD - CE"),
                       ("t5a-ce-ppc-ppd", "t5a-ce-ppc", "PPD helps on top of PPC: CE+PPC+PPD - CE+PPC"),
                       ("t5a-ce-ppc-ppd", "t5a-ce-ppd", "PPC helps on top of PPD: CE+PPC+PPD - CE+PPD"),
                       ("t5a-ce-ppc-ppd", "t5a-ce", "both terms: CE+PPC+PPD - CE")):
        if a in E and b in E:
            out.append(_diff(f"table5a:{a}-vs-{b}", "table5a", text, a, b))
    # Table 5b: K=10 vs K=1, and the best K
    if "t5b-k10" in E and "t5b-k1" in E:
        out.append(_diff("table5b:k10-vs-k1", "table5b", "K=10 beats K=1", "t5b-k10", "t5b-k1"))
    out += _best(plan, "table5b", "t5b-", "the best K")
    # Table 5c: the best momentum, and each mu vs the paper's best
    out += _best(plan, "table5c", "t5c-", "the best momentum mu")
    mus = [e for e in E.values() if e.table == "table5c"]
    pbest = _paper_best(plan, mus)
    for e in mus:
        if pbest is not None and e.id != pbest:
            out.append(_diff(f"table5c:{pbest}-vs-{e.id}", "table5c",
                             f"{E[pbest].row} (paper's best) beats {e.row}", pbest, e.id))
    # Table 5d: cosine vs each other distance
    for e in (e for e in E.values() if e.table == "table5d" and e.id != "t5d-cosine"):
        if "t5d-cosine" in E:
            out.append(_diff(f"table5d:cosine-vs-{e.id}", "table5d", f"cosine beats {e.row}", "t5d-cosine", e.id))
    return out


def _discrepancy_claims(E: dict) -> list[Claim]:
    """The discrepancy table: each switch's effect, and the official release against the paper."""
    out: list[Claim] = []
    if "d-paper" in E:
        for e in (e for e in E.values() if e.table == "discrepancy" and e.id.startswith("d-flip-")):
            out.append(_diff(f"discrepancy:{e.id}-vs-d-paper", "discrepancy",
                             f"effect of switching: {e.row}", e.id, "d-paper"))
    if "d-official" in E:
        if "d-paper" in E:
            out.append(_diff("discrepancy:d-official-vs-d-paper", "discrepancy",
                             "official release minus the paper's description", "d-official", "d-paper"))
        for e in (e for e in E.values() if e.table == "discrepancy"
                  and (e.id.startswith("d-rec-") or e.id == "d-official-mmseg-recipe")):
            out.append(_diff(f"discrepancy:{e.id}-vs-d-official", "discrepancy",
                             f"effect of switching: {e.row}", e.id, "d-official"))
    return out


def _paper_best(plan: Plan, entries) -> str | None:
    vals = [(plan.paper_value(e), e.id) for e in entries if plan.paper_value(e) is not None]
    return max(vals)[1] if vals else None  # ties: the larger id (deterministic)


def _best(plan: Plan, table: str, prefix: str, what: str) -> list[Claim]:
    ids = tuple(e.id for e in plan.entries.values() if e.table == table and e.id.startswith(prefix))
    return [Claim(f"{table}:best-{prefix.rstrip('-')}", table, what, best_of=ids)] if len(ids) >= 2 else []


# ---------------------------------------------------------------------------------------------------
# evaluation from the metrics files

def seed_metrics(plan: Plan, key: str, metric: str = "mIoU") -> dict[int, float]:
    """{seed: ``metric`` in %} of run ``key``, for the seeds with a metrics file."""
    out = {}
    for seed in plan.seeds:
        path = Path(plan.run_dir(key, seed)) / "metrics.json"
        if path.is_file():
            try:
                value = json.loads(path.read_text()).get(metric)
            except ValueError as err:
                raise ValueError(f"{path}: not valid JSON ({err})") from None
            if value is not None:
                out[seed] = 100.0 * float(value)
    return out


def evaluate(plan: Plan, claim: Claim) -> dict:
    per = {e: seed_metrics(plan, plan.entry_run[e]) for e in claim.entries()}
    seeds = [s for s in plan.seeds if all(s in per[e] for e in claim.entries())]
    paper = {e: plan.paper_value(plan.entries[e]) for e in claim.entries()}
    row = {"claim_id": claim.id, "table": claim.table, "claim": claim.text, "paper_best": "", "our_best": ""}
    if claim.best_of:
        pbest = _paper_best(plan, [plan.entries[e] for e in claim.best_of])
        means = {e: sum(per[e][s] for s in seeds) / len(seeds) for e in claim.best_of} if seeds else {}
        obest = max((v, e) for e, v in means.items())[1] if means else ""
        mean, lo, hi = (paired_interval([per[pbest][s] for s in seeds], [per[obest][s] for s in seeds])
                        if (seeds and pbest) else (math.nan,) * 3)
        pdelta = paper[pbest] - paper[obest] if (pbest and obest and paper[obest] is not None) else math.nan
        row.update(comparison=f"{pbest} - {obest}" if obest else f"{pbest} - (our best)",
                   paper_delta=pdelta, our_delta=mean, ci_lo=lo, ci_hi=hi, n_seeds=len(seeds),
                   verdict=best_verdict(pbest, obest, lo, hi, len(seeds)) if pbest and obest else "inconclusive",
                   paper_best=pbest or "", our_best=obest)
        return row
    diffs = [sum(c * per[e][s] for e, c in claim.terms) for s in seeds]
    mean, lo, hi = interval(diffs)
    pdelta = (sum(c * paper[e] for e, c in claim.terms)
              if all(paper[e] is not None for e, _ in claim.terms) else math.nan)
    row.update(comparison=" ".join(f"{'+' if c > 0 else '-'} {e}" for e, c in claim.terms).lstrip("+ "),
               paper_delta=pdelta, our_delta=mean, ci_lo=lo, ci_hi=hi, n_seeds=len(seeds),
               verdict=verdict(pdelta, lo, hi, len(seeds)))
    return row


def run_signature(plan: Plan, claim: Claim) -> tuple:
    """The runs a claim compares: ``(("best", runs))`` for a best-of claim, else the sorted
    ``(run key, summed coefficient)`` pairs without zeros, with the sign fixed so that the first
    coefficient is positive (a - b and b - a are one comparison)."""
    if claim.best_of:
        runs = tuple(sorted({plan.entry_run[e] for e in claim.best_of}))
        return ("best", runs) if len(runs) > 1 else ()
    coef: dict[str, float] = {}
    for e, c in claim.terms:
        run = plan.entry_run[e]
        coef[run] = coef.get(run, 0.0) + c
    sig = tuple(sorted((r, round(c, 9)) for r, c in coef.items() if abs(c) > 1e-12))
    if sig and sig[0][1] < 0:
        sig = tuple((r, -c) for r, c in sig)
    return sig


def independence(plan: Plan, claims: list[Claim]) -> list[str]:
    """Per claim: ``independent``, ``same run`` (both sides are one run: equal by construction) or
    ``duplicate of <claim id>`` (the same comparison of runs as an earlier claim)."""
    seen: dict[tuple, str] = {}
    out = []
    for claim in claims:
        sig = run_signature(plan, claim)
        if not sig:
            out.append(SAME_RUN)
        elif sig in seen:
            out.append(f"duplicate of {seen[sig]}")
        else:
            seen[sig] = claim.id
            out.append(INDEPENDENT)
    return out


def claim_rows(plan: Plan) -> list[dict]:
    claims = claims_for(plan)
    rows = [evaluate(plan, c) for c in claims]
    for row, status in zip(rows, independence(plan, claims)):
        row["independence"] = status
    return rows


def counts(rows) -> dict[str, int]:
    """Verdict counts over the independent claims (rows without ``independence``: all rows)."""
    rows = [r for r in rows if r.get("independence", INDEPENDENT) == INDEPENDENT]
    return {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}


def _fmt(x) -> str:
    if isinstance(x, float):
        return "n/a" if math.isnan(x) else f"{x:+.2f}"
    return str(x)


def to_markdown(rows, plan: Plan) -> str:
    c = counts(rows)
    head = ["claim", "comparison", "paper delta", "our delta", "95% CI", "seeds", "verdict", "independence"]
    lines = ["# Claims: every comparison the paper makes, paired by seed", "",
             f"Scale `{plan.scale}`, seeds {plan.seeds}; deltas in mIoU points (%). Our delta: mean over seeds "
             "of the paired difference; 95% CI: t-interval (n-1 dof), n/a with one seed. Verdict: reproduced "
             "(CI excludes 0 with the paper's sign), contradicted (excludes 0 with the other sign), "
             "inconclusive (CI spans 0, fewer than 2 seeds, or the paper gives no or a zero delta). "
             "'Best' rows: reproduced when our best entry is the paper's; else the paired delta "
             "paper's best - our best decides (CI spans 0: inconclusive, else contradicted).", "",
             f"**{c['reproduced']} reproduced, {c['contradicted']} contradicted, {c['inconclusive']} "
             f"inconclusive** ({sum(c.values())} distinct claims; {len(rows) - sum(c.values())} of the "
             f"{len(rows)} rows compare a run with itself or repeat another row's comparison, because "
             "entries with identical configs are one run at this scale: marked in the last column, "
             "not counted).", "",
             "| table | " + " | ".join(head) + " |", "|" + "---|" * (len(head) + 1)]
    for r in rows:
        ci = "n/a" if math.isnan(r["ci_lo"]) else f"[{r['ci_lo']:+.2f}, {r['ci_hi']:+.2f}]"
        text = r["claim"] + (f" (paper: {r['paper_best']}, ours: {r['our_best'] or 'n/a'})" if r["paper_best"] else "")
        cells = [r["table"], text, r["comparison"], _fmt(r["paper_delta"]), _fmt(r["our_delta"]), ci,
                 str(r["n_seeds"]), r["verdict"], r.get("independence", INDEPENDENT)]
        lines.append("| " + " | ".join(s.replace("|", "/") for s in cells) + " |")
    return "\n".join(lines) + "\n"


def build_claims(plan: Plan, out_dir: str | Path) -> tuple[list[Path], dict[str, int], list[dict]]:
    """Write ``<out_dir>/claims.{md,csv}``; returns (paths, verdict counts, rows)."""
    rows = claim_rows(plan)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for ext, text in (("md", to_markdown(rows, plan)),
                      ("csv", pd.DataFrame(rows, columns=COLUMNS).to_csv(index=False))):
        path = out_dir / f"claims.{ext}"
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        written.append(path)
    return written, counts(rows), rows
