"""Pipeline settings shared by the Snakefile, the experiment plan and the DVC generator.

- ``parse_seeds``: ``seeds`` as every tool spells it (``3``, ``[0, 2]``, ``"[0,2]"``, ``"0,1,2"``).
- ``root_pattern``: the one ``<prefix>/{dataset}`` path of a scale's prepared roots (the data rules'
  outputs), from ``configs/scales/<scale>.yaml`` ``data.roots``.
- ``MINI_RAW_DIR``: where ``protoseg make-mini`` writes the twins in the official layouts.
"""
from __future__ import annotations

from typing import Any

MINI_RAW_DIR = "data/mini/raw"  # <MINI_RAW_DIR>/<dataset>/: the official-layout twins before `prepare`
RUN_CONFIG = "run.yaml"  # <runs_dir>/<scale>/<key>/run.yaml: a run's engine config (all seeds)


class PipelineConfigError(ValueError):
    """A pipeline setting that cannot be used; the message names the key and what was expected."""


def parse_seeds(value: Any, where: str = "seeds") -> list[int]:
    """``seeds`` as a list of ints: an int n means ``0..n-1``; a list, or a string such as ``"0,2"``
    or ``"[0,2]"`` (Snakemake's ``--config seeds=[0,2]`` arrives as a string), lists them."""
    error = PipelineConfigError(f"{where} {value!r}: expected a count or comma-separated integers, e.g. 3 "
                                "or 0,1,2")
    if isinstance(value, bool):
        raise error
    if isinstance(value, int):
        if value < 1:
            raise error
        return list(range(value))
    items = [v for v in value.strip().strip("[]").split(",") if v.strip()] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise error
    try:  # whole numbers only (1.5 is not a seed), each once, none negative
        seeds = [v if isinstance(v, int) and not isinstance(v, bool) else int(str(v).strip()) for v in items]
    except (TypeError, ValueError):
        raise error from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise error
    return seeds


def root_pattern(roots: dict[str, str], where: str = "data.roots") -> str:
    """The path pattern ``<prefix>/{dataset}`` that every root of ``roots`` (dataset -> path) follows;
    a rule with this output makes each of them."""
    patterns = set()
    for dataset, root in roots.items():
        root = str(root).rstrip("/")
        head, _, last = root.rpartition("/")
        if last != dataset:
            raise PipelineConfigError(f"{where}.{dataset}={root!r}: expected a folder named {dataset!r} "
                                      "(<prefix>/<dataset>)")
        patterns.add(f"{head}/{{dataset}}" if head else "{dataset}")
    if len(patterns) != 1:
        raise PipelineConfigError(f"{where}: expected every root under one folder (<prefix>/<dataset>), "
                                  f"got {', '.join(f'{d}={r}' for d, r in roots.items())}")
    return patterns.pop()
