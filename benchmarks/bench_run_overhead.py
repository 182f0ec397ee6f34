"""The fixed costs of one mini training run, per phase and backbone family, in process CPU seconds.

Each point is a real ``train(cfg)`` in a fresh interpreter (imports are only paid once per process)
of the mini config of an ADE20K prototype entry (``protoseg.pipeline.experiments``, as
sweep_mini_recipe.py composes it), at random init and ``--iters`` steps, on one thread. Phases are
exclusive process CPU time (``time.process_time``: other jobs on the cores disturb it far less than
the wall clock), from wrappers around the engine's own functions:

- ``startup``: the interpreter up to this script; ``import torch``; ``import engine``: the rest of
  ``protoseg.engine.train``; ``import family``: timm or transformers where the engine has not
  imported it already (with torchvision and ``torch._dynamo``, which they import: a run pays for
  ``torch._dynamo`` in any case, since torch's optimizers import it when constructed);
- ``build``: model, optimizer, schedule (``train._build``); ``run header``: run_info, machine, data hash;
- ``data``: decoding (``SegmentationDataset.load``) and the pipeline of every item read (training's
  ``EpochItems``, the evaluation's dataset); ``steps``: the training steps without their data;
- ``eval``: the final evaluation without its data; ``figure``: ``confusion.png``;
  ``checkpoint``: ``final.pt``; ``other``: the rest of the process (metrics files, exit).

The trees: the one holding this script (after) and ``--before`` (a source tree or a git revision of
this repository, exported with ``git archive``): both run the same composed config. The data is the
prepared ADE20K twin at ``--data-root`` (made if absent). At ``--iters 20`` a run reads 320 training
and 300 evaluation items; the recipe's 150 steps decode the 2000 training images once
(``data per item read`` scales it). Writes results/benchmarks/run_overhead.json (medians of
``--repeats``) and prints a markdown table.

    python benchmarks/bench_run_overhead.py --before 1b2643c       # ~4.5 min on 2 cores
"""
from __future__ import annotations

import argparse
import datetime
import functools
import importlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# family -> (the ADE20K prototype entry it serves, the library its builder imports)
FAMILIES = {"resnet_micro": ("t1-ours-r101", "timm"), "hrnet_micro": ("t1-ours-w48", "timm.models.hrnet"),
            "swin_micro": ("t1-ours-swin-b", "timm"),
            "mit_micro": ("t1-ours-b4", "transformers.models.segformer.modeling_segformer")}
PHASES = ("startup", "import torch", "import engine", "import family", "build", "run header", "data", "steps",
          "eval", "figure", "checkpoint", "other")
MARK = "RUN_OVERHEAD "  # the child's result line on stdout


def use_tree(tree: Path) -> None:
    """Import ``protoseg`` from ``tree``: the editable install's finder would otherwise answer with the
    checkout it was installed from, and its .pth hook has imported ``protoseg`` already."""
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__]
    for name in [m for m in sys.modules if m == "protoseg" or m.startswith("protoseg.")]:
        del sys.modules[name]
    sys.path.insert(0, str(tree))


class Phases:
    """Exclusive process CPU seconds per phase: a wrapped call's time minus that of wrapped calls inside
    it. ``calls``: how often each wrapped function ran (by its name)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._inner: list[float] = []  # per open wrapped call: CPU of the wrapped calls inside it

    def wrap(self, owner, attr: str, phase: str) -> None:
        fn = getattr(owner, attr)

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            self._inner.append(0.0)
            t0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.process_time() - t0
                self.seconds[phase] += spent - self._inner.pop()
                self.calls[attr] += 1
                if self._inner:
                    self._inner[-1] += spent

        setattr(owner, attr, timed)


def child(tree: Path, family: str, config: Path, name: str) -> dict:
    """One run ``name`` of ``config`` in this (fresh) process, from ``tree``: its phases."""
    phases = Phases()
    phases.seconds["startup"] = t = time.process_time()
    use_tree(tree)
    import torch  # noqa: F401

    phases.seconds["import torch"] = -t + (t := time.process_time())
    import protoseg.engine.train as train_mod

    phases.seconds["import engine"] = -t + (t := time.process_time())
    from protoseg._compat import ensure_torchvision_importable

    ensure_torchvision_importable()  # what the family's builder does before importing its library
    importlib.import_module(FAMILIES[family][1])
    phases.seconds["import family"] = time.process_time() - t
    from protoseg.config import load_config
    from protoseg.data.dataset import SegmentationDataset
    from protoseg.engine import evaluate as evaluate_mod
    from protoseg.engine.data_order import EpochItems

    for owner, attr, phase in [(train_mod, "_build", "build"), (train_mod, "_write_run_header", "run header"),
                               (SegmentationDataset, "load", "data"), (SegmentationDataset, "__getitem__", "data"),
                               (EpochItems, "__getitem__", "data"),
                               (train_mod, "_step", "steps"), (train_mod, "evaluate_model", "eval"),
                               (evaluate_mod, "confusion_png", "figure"),
                               (train_mod.Checkpointer, "save", "checkpoint")]:
        phases.wrap(owner, attr, phase)
    train_mod.train(load_config(str(config), [f"run.name={name}"]))
    total = time.process_time()
    phases.seconds["other"] = total - sum(phases.seconds.values())
    return {"total": total, **{p: phases.seconds[p] for p in PHASES}, "steps_run": phases.calls["_step"],
            "items_decoded": phases.calls["load"], "items_read": phases.calls["__getitem__"]}


def measure(tree: Path, family: str, config: Path, name: str) -> dict:
    """``child`` in a fresh interpreter on one thread."""
    proc = subprocess.run([sys.executable, __file__, "--child", str(tree), family, str(config), name],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode or not lines:
        raise RuntimeError(f"{tree} {family}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len(MARK):])


def ensure_data(root: Path) -> None:
    """The prepared ADE20K twin at ``root`` (made with ``protoseg make-mini`` and ``prepare`` if absent)."""
    if (root / "meta.json").is_file():
        return
    with tempfile.TemporaryDirectory() as tmp:
        ps = [sys.executable, "-m", "protoseg.cli"]
        subprocess.run([*ps, "make-mini", "ade20k", "--dst", f"{tmp}/raw"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([*ps, "prepare", "ade20k", "--src", f"{tmp}/raw", "--dst", str(root), "--workers", "1",
                        "--quiet"], check=True, stdout=subprocess.DEVNULL)


def compose(iters: int, data_root: Path, out_dir: Path) -> dict[str, Path]:
    """Per family, the run config of its entry (random init, ``iters`` steps) written under ``out_dir``."""
    import yaml

    use_tree(REPO)
    from protoseg.pipeline.experiments import build_plan

    plan = build_plan()
    paths = {}
    for family, (entry, _) in FAMILIES.items():
        cfg = plan.run_config(plan.entry_run[entry], 0, entry)
        cfg["model"].pop("pretrained", None)  # random init: the pre-training is not what is measured
        cfg["train"]["iters"] = iters
        cfg["data"]["root"] = str(data_root.resolve())
        cfg["run"] = {"name": family, "output_dir": str(out_dir / "runs"), "seed": 0}
        paths[family] = out_dir / f"{family}.yaml"
        paths[family].write_text(yaml.safe_dump(cfg, sort_keys=False))
    return paths


def tree_label(tree: Path) -> str:
    """``git <rev>``, with ``+ changes`` where the work tree differs from it; the folder outside git."""
    git = ["git", "-C", str(tree)]
    rev = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if rev.returncode:
        return str(tree)
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    return f"git {rev.stdout.strip()}" + (" + changes" if dirty.stdout.strip() else "")


def before_tree(spec: str, tmp: Path) -> tuple[Path, str]:
    """``spec`` as a source tree: a folder, or a git revision of this repository exported to ``tmp``."""
    if Path(spec).is_dir():
        return Path(spec).resolve(), str(Path(spec).resolve())
    rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", spec], check=True, capture_output=True,
                         text=True).stdout.strip()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp / "before", filter="data")
    return tmp / "before", f"git {rev}"


def summarise(points: list[dict]) -> dict:
    """Medians over the repeats (seconds, 3 decimals), their minima (``min``: the least disturbed by other
    jobs), and the per-step and per-item costs."""
    out = {k: round(statistics.median(p[k] for p in points), 3) for k in ("total", *PHASES)}
    out["min"] = {k: round(min(p[k] for p in points), 3) for k in ("total", *PHASES)}
    out.update({k: points[0][k] for k in ("steps_run", "items_decoded", "items_read")})
    out["per step"] = round(out["steps"] / max(out["steps_run"], 1), 4)
    out["data per item read"] = round(out["data"] / max(out["items_read"], 1), 5)
    return out


def print_table(result: dict) -> None:
    trees = [k for k in ("before", "after") if k in result]
    print("| CPU s | " + " | ".join(FAMILIES) + " |")
    print("|---" * (len(FAMILIES) + 1) + "|")
    for phase in (*PHASES, "total"):
        cells = [" -> ".join(f"{result[t]['runs'][f][phase]:.2f}" for t in trees) for f in FAMILIES]
        print(f"| {phase} | " + " | ".join(cells) + " |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", help="the tree to compare with: a folder or a git revision (omitted: after only, "
                                     "the file's earlier 'before' kept)")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data-root", default=str(REPO / "data/mini/prepared/ade20k"))
    ap.add_argument("--out", default=str(REPO / "results/benchmarks/run_overhead.json"))
    args = ap.parse_args(argv)
    ensure_data(Path(args.data_root))
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.is_file() and not args.before else {}
    with tempfile.TemporaryDirectory() as tmp:
        configs = compose(args.iters, Path(args.data_root), Path(tmp))
        trees = {"after": (REPO, tree_label(REPO))}
        if args.before:
            trees = {"before": before_tree(args.before, Path(tmp)), **trees}
        points: dict = {t: defaultdict(list) for t in trees}
        for rep in range(args.repeats):  # trees and families interleaved: drifting load hits all alike
            for family in FAMILIES:
                for t, (tree, _) in trees.items():
                    points[t][family].append(measure(tree, family, configs[family], f"{t}-{family}-{rep}"))
        for t, (_, label) in trees.items():
            result[t] = {"tree": label, "runs": {f: summarise(points[t][f]) for f in FAMILIES}}
    result.update({"what": __doc__.split("\n")[0],
                   "date": datetime.date.today().isoformat(), "iters": args.iters, "repeats": args.repeats,
                   "entries": {f: e for f, (e, _) in FAMILIES.items()}, "threads": 1,
                   "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                               "python": platform.python_version()}})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print_table(result)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        tree_, family_, config_, name_ = sys.argv[2:6]
        print(MARK + json.dumps(child(Path(tree_), family_, Path(config_), name_)), flush=True)
        sys.exit(0)
    sys.exit(main())
