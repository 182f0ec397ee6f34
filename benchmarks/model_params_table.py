"""Learnable parameters of every reproduced row of the paper's tables: ours against the paper's print.

Counts models built on the meta device (same modules as a random-init build; seconds, no memory).
Prints a markdown table for docs/models.md.

    python benchmarks/model_params_table.py
"""
from __future__ import annotations

from protoseg.models.paper import PAPER_ROWS, PARAM_DEVIATIONS, PARAM_TOLERANCE_M
from protoseg.models.params import count_config_parameters


def rows() -> list[dict]:
    out = []
    for row in PAPER_ROWS:
        ours = count_config_parameters(row.config()) / 1e6
        dev = PARAM_DEVIATIONS.get(row.key)
        note = ""
        if dev is not None:
            if dev.num_classes is not None:
                at = count_config_parameters(row.config(dev.num_classes)) / 1e6
                note = f"{at:.2f} at {dev.num_classes} classes"
            else:
                note = f"within {dev.tolerance_m}"
        out.append({"key": row.key, "classes": row.num_classes, "ours": ours, "paper": row.params_m,
                    "ok": abs(ours - row.params_m) <= PARAM_TOLERANCE_M, "note": note})
    return out


def main() -> int:
    print("| row | C | ours (M) | paper (M) | diff | within 0.05 | documented deviation |")
    print("|---|---|---|---|---|---|---|")
    for r in rows():
        print(f"| {r['key']} | {r['classes']} | {r['ours']:.3f} | {r['paper']:.2f} | {r['ours'] - r['paper']:+.3f} | "
              f"{'yes' if r['ok'] else 'no'} | {r['note']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
