"""``results/figures/prototype_diagnostics.png``: do the K prototypes of a class collapse?

For the Table 5b runs (K = 1, 5, 10, 20, 50) and the argmax-vs-Gumbel rows (``d-paper``,
``d-flip-update_assignment``, ``d-official``), bar charts of the ``prototype_diagnostics`` summary
that evaluation writes into each run's ``metrics.json`` (``protoseg.method.diagnostics``): mean
pairwise cosine between a class's prototypes, normalised usage entropy and dead-prototype fraction,
each averaged over the seeds that have finished. Runs without the file (or without diagnostics) are
left out; the figure says so in its title.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .experiments import Plan

ENTRIES = (("t5b-k1", "K=1", "Table 5b"), ("t5b-k5", "K=5", "Table 5b"), ("t5b-k10", "K=10", "Table 5b"),
           ("t5b-k20", "K=20", "Table 5b"), ("t5b-k50", "K=50", "Table 5b"),
           ("d-paper", "paper (argmax)", "argmax vs Gumbel"),
           ("d-flip-update_assignment", "paper + Gumbel", "argmax vs Gumbel"),
           ("d-official", "official", "argmax vs Gumbel"))
PANELS = (("proto_mean_pairwise_cos", "mean pairwise cosine", (-1.0, 1.0)),
          ("proto_usage_entropy", "usage entropy / log K", (0.0, 1.0)),
          ("proto_dead_fraction", "dead prototypes (fraction)", (0.0, 1.0)))


def _mean(values: list) -> float:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else float("nan")


def diagnostics_rows(plan: Plan, entries=ENTRIES) -> list[dict[str, Any]]:
    """One row per entry that has at least one finished seed with diagnostics:
    ``{"entry", "label", "group", "seeds", <summary keys>: mean over seeds}``."""
    rows = []
    for entry, label, group in entries:
        key = plan.entry_run.get(entry)
        if key is None:
            continue
        diags = []
        for seed in plan.seeds:
            path = Path(plan.run_dir(key, seed)) / "metrics.json"
            if path.is_file():
                try:
                    d = json.loads(path.read_text()).get("prototype_diagnostics")
                except ValueError as err:
                    raise ValueError(f"{path}: not JSON: {err}") from None
                if isinstance(d, dict):
                    diags.append(d)
        if diags:
            rows.append({"entry": entry, "label": label, "group": group, "seeds": len(diags),
                         **{k: _mean([d.get(k) for d in diags]) for k, _, _ in PANELS}})
    return rows


def plot_prototype_diagnostics(rows: list[dict[str, Any]], out_png: str | Path, *, title: str = "") -> Path:
    """Three bar charts (one per summary scalar) of ``rows`` (``diagnostics_rows``' format), about
    800 px wide. NaN (K=1 has no pairs and no choice) is drawn as an 'n/a' mark."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError(f"{out_png}: no run has prototype_diagnostics in its metrics.json; nothing to plot")
    groups = list(dict.fromkeys(r["group"] for r in rows))
    colors = {g: f"C{i}" for i, g in enumerate(groups)}
    fig, axes = plt.subplots(1, len(PANELS), figsize=(10, 3.8))
    x = list(range(len(rows)))
    for ax, (key, ylabel, ylim) in zip(axes, PANELS):
        vals = [r.get(key, float("nan")) for r in rows]
        finite = [v if isinstance(v, (int, float)) and math.isfinite(v) else 0.0 for v in vals]
        ax.bar(x, finite, color=[colors[r["group"]] for r in rows], edgecolor="black", linewidth=0.5)
        for i, v in enumerate(vals):
            ok = isinstance(v, (int, float)) and math.isfinite(v)
            ax.text(i, (v if ok and v > 0 else 0) + 0.02 * (ylim[1] - ylim[0]), f"{v:.2f}" if ok else "n/a",
                    ha="center", va="bottom", fontsize=8)
        ax.set_xticks(x, [r["label"] for r in rows], rotation=45, ha="right", fontsize=8)
        ax.set_ylim(ylim[0], ylim[1] * 1.12)
        ax.set_ylabel(ylabel, fontsize=10)
        ax.set_title(ylabel, fontsize=10)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.tick_params(axis="y", labelsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[g]) for g in groups]
    fig.legend(handles, groups, loc="upper right", fontsize=8, ncol=len(groups))
    fig.suptitle(title or "Prototype diagnostics (mean over classes present in val)", fontsize=11, x=0.02,
                 ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=80)  # 10 in x 80 dpi = 800 px
    plt.close(fig)
    return out_png


def prototype_diagnostics_figure(plan: Plan, out: str | Path) -> Path:
    """``diagnostics_rows(plan)`` plotted to ``out``; the title names the scale and missing runs."""
    rows = diagnostics_rows(plan)
    missing = [e for e, _, _ in ENTRIES if e not in {r["entry"] for r in rows}]
    title = f"Prototype diagnostics, scale {plan.scale}" + (f" (no diagnostics: {', '.join(missing)})" if missing else "")
    return plot_prototype_diagnostics(rows, out, title=title)
