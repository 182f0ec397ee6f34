"""The GPU check's report: ``gpu.json`` and ``gpu.md``, rewritten atomically after every section
(a run killed by a time limit keeps what it finished)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from protoseg.atomic_io import write_bytes_atomic, write_json_atomic


class Report:
    """Everything measured so far; ``save`` rewrites ``gpu.json`` and ``gpu.md`` atomically."""

    def __init__(self, out: Path, meta: dict, judged: bool, why_not: str):
        self.out, self.judged, self.why_not = out, judged, why_not
        self.data: dict[str, Any] = {"meta": meta, "status": "running", "targets": [], "skipped": [],
                                     "sections": {}}

    def target(self, name: str, value: float | None, bound: float, op: str, unit: str, what: str,
               missing: str = "not measured") -> None:
        """A measured target (``op``: ``<=`` or ``>=``); ``met`` is null, with the reason, when the value
        is missing (``missing`` says why) or not judged here."""
        row = {"name": name, "value": value, "target": f"{op} {bound:.3g}{unit}", "bound": bound, "op": op,
               "unit": unit, "what": what}
        if value is None or not math.isfinite(value):
            row.update(met=None, reason=missing)
        elif not self.judged:
            row.update(met=None, reason=self.why_not)
        else:
            row["met"] = bool(value <= bound if op == "<=" else value >= bound)
        self.data["targets"].append(row)

    def partial(self, section: str, result: dict) -> None:
        """Save a section's results so far (``status: running``), for a run killed mid-section."""
        self.data["sections"][section] = {"status": "running", **result}
        self.save()

    def skip(self, what: str, reason: str) -> None:
        self.data["skipped"].append({"what": what, "reason": reason})

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.out / "gpu.json", _finite(self.data))
        write_bytes_atomic(self.out / "gpu.md", markdown(self.data).encode())


def markdown(data: dict) -> str:
    m = data["meta"]
    lines = [f"# GPU check: {m['device_name']}", "",
             f"`{m['command']}`; torch {m['torch']}, CUDA {m['cuda']}, commit `{m['git_commit'][:12]}`, "
             f"sizes: {'tiny' if m['tiny'] else 'paper'}; status: **{data['status']}**"
             f" ({data.get('elapsed_s', 0):.0f} s)", "",
             "Correctness of the CUDA path: `pytest -m gpu tests/test_gpu_correctness.py` (not in this report)."]
    lines += ["", "## Targets", "", "| target | measured | target | met |", "|---|---|---|---|"]
    for t in data["targets"]:
        value = "not measured" if t["value"] is None else f"{t['value']:.4g}{t['unit']}"
        met = {True: "met", False: "**missed**", None: f"not judged ({t.get('reason', '')})"}[t["met"]]
        lines.append(f"| {t['name']} | {value} | {t['target']} | {met} |")
    lines += _step_table(data) + _training_table(data) + _mini_run(data)
    if data["skipped"]:
        lines += ["", "## Skipped", ""] + [f"- {s['what']}: {s['reason']}" for s in data["skipped"]]
    errors = [(k, v["error"]) for k, v in data["sections"].items() if "error" in v]
    if errors:
        lines += ["", "## Errors", ""] + [f"- {k}: `{e}`" for k, e in errors]
    return "\n".join(lines) + "\n"


def _step_table(data: dict) -> list[str]:
    step = data["sections"].get("prototype_step", {}).get("rows")
    if not step:
        return []
    lines = ["", "## Prototype step (ours vs the release's loop)", "",
             "| C | loop (ms) | ours (ms) | speed-up | loop peak (GiB) | ours peak (GiB) |",
             "|---|---|---|---|---|---|"]
    for r in step:
        lines.append(f"| {r['C']} | {r['loop_ms']:.2f} | {r['ours_ms']:.2f} | {r['speedup']:.1f}x | "
                     f"{fmt(r['loop_peak_gib'])} | {fmt(r['ours_peak_gib'])} |")
    return lines


def _training_table(data: dict) -> list[str]:
    perf = [(k, v) for k, v in data["sections"].items() if k.startswith("train_") and "heads" in v]
    if not perf:
        return []
    lines = ["", "## Training step and inference (fp32)", "",
             "| model | head | batch | step (ms) | peak (GiB) | latency batch 1 (ms) |",
             "|---|---|---|---|---|---|"]
    for key, sec in perf:
        lat = data["sections"].get(key.replace("train_", "latency_"), {}).get("ms", {})
        for head, r in sec["heads"].items():
            lines.append(f"| {sec['model']} | {head} | {sec['batch']} | {r['step_ms']:.1f} | "
                         f"{fmt(r['peak_gib'])} | {fmt(lat.get(head))} |")
    return lines


def _mini_run(data: dict) -> list[str]:
    mini = data["sections"].get("mini_run")
    if not mini:
        return []
    state = (f"{mini['wall_s']:.0f} s of wall time, training on {', '.join(mini['run_devices']) or '?'}"
             if mini.get("measured") else "**not measured**" + (f" (exit {mini.get('returncode')})"
                                                                if "wall_s" in mini else ""))
    return ["", "## Mini reproduction", "", f"`{mini['command']}` (in `{mini['cwd']}`): {state}"]


def fmt(x: float | None) -> str:
    """A figure with 3 significant digits, ``n/a`` when missing."""
    return "n/a" if x is None else f"{x:.3g}"


def _finite(x):
    """Strict JSON: non-finite floats become null."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
