"""The experiment list (``configs/experiments.yaml``) -> deduplicated runs for the training engine.

The list names each reproduced table entry by the paper's model, dataset, head, variant and schedule;
a scale file (``configs/scales/<scale>.yaml``) maps those names to concrete settings. ``build_plan``
expands every entry, composes its engine config at the scale, and groups entries whose composed
config is identical into one run, keyed by a hash of that config (``run_key``). A run is trained
once per seed, in ``<runs_dir>/<scale>/<key>/s<seed>/``.

Pure Python (yaml, ``protoseg.config``, ``protoseg.atomic_io``): Snakemake imports this module while parsing the
workflow, so it must not import torch (``tests/test_architecture_pipeline.py`` checks).
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from protoseg.atomic_io import sha256_json
from protoseg.config.datasets import DATASET_CLASSES
from protoseg.config.method import VARIANTS
from protoseg.config.model import HEADS, PROTOTYPE_HEADS
from protoseg.config.pipeline import RUN_CONFIG, PipelineConfigError, parse_seeds

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PIPELINE_CONFIG = "configs/pipeline.yaml"


class ExperimentError(ValueError):
    """A malformed experiment list, scale file or pipeline config; the message names the entry."""


@dataclass(frozen=True)
class Entry:
    """One cell of a reproduced table."""

    id: str
    table: str
    row: str
    column: str
    dataset: str
    model: str
    head: str
    schedule: str
    K: int = 10
    variant: str = "paper"
    top_n: int | None = None
    method: dict = field(default_factory=dict)
    model_options: dict = field(default_factory=dict)
    paper: tuple | None = None  # (table key, row index, column index | None) in paper_tables.yaml
    paper_value: float | None = None  # explicit value (overrides `paper`)
    recipe: str = "mmseg"  # a key of the list's `recipes` (mmseg: the scale's settings unchanged)
    recipe_options: dict = field(default_factory=dict)  # {optim|data|train|model: {...}} over the recipe
    recipe_settings: dict = field(default_factory=dict)  # resolved by expand_entries: recipe + options


@dataclass
class Run:
    """One distinct experiment (trained once per seed)."""

    key: str
    config: dict  # the engine config without run.name/output_dir/seed and tracking
    entries: list  # entry ids sharing this run, in list order
    dataset: str
    schedule: str
    resources: dict


@dataclass
class Plan:
    scale: str
    seeds: list
    runs_dir: str
    runs: dict  # key -> Run, in first-appearance order
    entries: dict  # entry id -> Entry
    entry_run: dict  # entry id -> run key
    paper_tables: dict
    scale_config: dict = field(default_factory=dict)  # the scale file's content, read once by build_plan
    scale_file: str = ""  # the scale file's path, as given (a dependency of the pipeline's stages)

    def run_dir(self, key: str, seed: int) -> str:
        return f"{self.runs_dir}/{self.scale}/{key}/s{seed}"

    def config_path(self, key: str) -> str:
        """``<runs_dir>/<scale>/<key>/run.yaml``: the engine config of run ``key`` (seed 0; a seed S
        trains it with the overrides ``seed_overrides(key, S)``)."""
        return f"{self.runs_dir}/{self.scale}/{key}/{RUN_CONFIG}"

    def seed_overrides(self, key: str, seed: int) -> list[str]:
        """The ``key=value`` overrides that train ``config_path(key)`` as seed ``seed``."""
        return [f"run.seed={int(seed)}", f"run.name={key}/s{int(seed)}"]

    def keys_for_tables(self, tables) -> list[str]:
        tables = set(tables)
        return list(dict.fromkeys(self.entry_run[e.id] for e in self.entries.values() if e.table in tables))

    def datasets(self, keys=None) -> list[str]:
        return sorted({self.runs[k].dataset for k in (self.runs if keys is None else keys)})

    def paper_value(self, entry: Entry) -> float | None:
        if entry.paper_value is not None:
            return float(entry.paper_value)
        if entry.paper is None:
            return None
        table, row, col = entry.paper
        value = self.paper_tables[table]["rows"][row].get("miou")
        if col is not None:
            value = value[col] if isinstance(value, list) else None
        return None if value is None else float(value)

    def paper_params(self, entry: Entry) -> float | None:
        if entry.paper is None:
            return None
        table, row, col = entry.paper
        value = self.paper_tables[table]["rows"][row].get("params_m")
        if isinstance(value, list):
            value = value[col] if col is not None else None
        return None if value is None else float(value)

    def run_config(self, key: str, seed: int, entry_id: str | None = None) -> dict:
        """The full engine config of run ``key`` and ``seed``; tracking names ``entry_id`` (default:
        the run's first entry)."""
        run = self.runs[key]
        cfg = copy.deepcopy(run.config)
        entry = self.entries[entry_id or run.entries[0]]
        cfg["run"] = {"name": f"{key}/s{seed}", "output_dir": f"{self.runs_dir}/{self.scale}", "seed": int(seed)}
        cfg["tracking"] = tracking_section(self, entry)
        return cfg


def tracking_section(plan: Plan, entry: Entry) -> dict:
    return {"experiment": f"{plan.scale}/{entry.table}", "entry": entry.id, "table": entry.table,
            "row": entry.row, "column": entry.column, "paper_value": plan.paper_value(entry),
            "metric": "mIoU"}


# ---------------------------------------------------------------------------------------------------
# loading

def _read_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_absolute() and not path.exists():
        path = REPO / path
    if not path.is_file():
        raise ExperimentError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ExperimentError(f"{path}: not a text file (not UTF-8); expected YAML") from None
    except yaml.YAMLError as err:
        raise ExperimentError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(data, dict):
        raise ExperimentError(f"{path}: expected a mapping at the top level, got "
                              f"{'an empty file' if data is None else type(data).__name__}")
    return data


def load_pipeline_config(path: str | Path | None = None, overrides: dict | None = None) -> dict:
    source = path or DEFAULT_PIPELINE_CONFIG
    cfg = _read_yaml(source)
    cfg.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if cfg.get("scale") not in ("mini", "paper"):
        raise ExperimentError(f"{source}: scale={cfg.get('scale')!r}: expected mini or paper")
    try:
        cfg["seeds"] = parse_seeds(cfg.get("seeds", [0]))  # an int n means seeds 0..n-1
    except PipelineConfigError as err:
        raise ExperimentError(f"{source}: {err}") from None
    return cfg


def expand_entries(data: dict) -> list[Entry]:
    """Every entry of the list, with table defaults and grids expanded; ids checked unique."""
    if not isinstance(data, dict) or "tables" not in data:
        raise ExperimentError("experiment list: expected a mapping with `tables`")
    top = dict(data.get("defaults") or {})
    recipes = {"mmseg": {}, **(data.get("recipes") or {})}
    out: list[Entry] = []
    for table, spec in data["tables"].items():
        tdef = {**top, **(spec.get("defaults") or {})}
        raw: list[dict] = []
        for e in spec.get("entries") or []:
            raw.append({**tdef, **e})
        grid = spec.get("grid")
        if grid:
            for r in grid["rows"]:
                for ci, c in enumerate(grid["columns"]):
                    item = {**tdef, **{k: v for k, v in r.items() if k not in ("paper_row", "vary")}}
                    if isinstance(c, dict):
                        item.update({k: v for k, v in c.items()})
                        col_name = str(c["column"])
                    else:  # a scalar grid value of the row's `vary` method key
                        item["method"] = {**(item.get("method") or {}), r["vary"]: c}
                        col_name = str(c)
                    item["column"] = col_name
                    item["id"] = f"{r['id']}-{col_name}"
                    item["paper"] = [table, r["paper_row"], ci]
                    raw.append(item)
        for item in raw:
            item.setdefault("table", table)
            try:
                paper = item.pop("paper", None)
                entry = Entry(paper=tuple(paper) if paper else None, **item)
            except TypeError as err:
                raise ExperimentError(f"experiment {item.get('id', '?')} in {table}: {err}") from None
            if entry.recipe not in recipes:
                raise ExperimentError(f"experiment {entry.id}: recipe={entry.recipe!r}: expected one of "
                                      f"{', '.join(recipes)}")
            settings = _merge_sections(recipes[entry.recipe], entry.recipe_options, entry.id)
            out.append(dataclasses.replace(entry, recipe_settings=settings))
    ids = [e.id for e in out]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ExperimentError(f"experiment list: duplicate ids {dup}")
    for e in out:
        if e.head not in HEADS:
            raise ExperimentError(f"experiment {e.id}: head={e.head!r}: expected one of {', '.join(HEADS)}")
        if e.variant not in ("paper", "official"):
            raise ExperimentError(f"experiment {e.id}: variant={e.variant!r}: expected paper or official")
    return out


RECIPE_SECTIONS = ("model", "data", "optim", "train")


def _merge_sections(recipe: dict, options: dict, where: str) -> dict:
    """``recipe`` with ``options`` merged per section; only the engine's sections are allowed."""
    out: dict = {}
    for part in (recipe or {}, options or {}):
        unknown = sorted(set(part) - set(RECIPE_SECTIONS))
        if unknown:
            raise ExperimentError(f"experiment {where}: recipe section(s) {unknown}; expected "
                                  f"{', '.join(RECIPE_SECTIONS)}")
        for section, values in part.items():
            out[section] = {**out.get(section, {}), **(values or {})}
    return out


def _method_presets() -> dict[str, dict]:
    """The MethodConfig presets (``protoseg.config.method.VARIANTS``) as plain dicts."""
    return {name: dataclasses.asdict(cfg) for name, cfg in VARIANTS.items()}


def compose(entry: Entry, scale: dict) -> dict:
    """The engine config of ``entry`` at ``scale`` (no run section, no tracking): the canonical form
    that ``run_key`` hashes. Method overrides equal to the variant preset are dropped, and settings
    that do not apply (K of a softmax head) are left out, so equal experiments compose equally."""
    where = f"experiment {entry.id} at scale {scale.get('name')}"
    try:
        model_map = scale["models"][entry.model]
    except KeyError:
        raise ExperimentError(f"{where}: model {entry.model!r} not in the scale's `models`") from None
    model = dict(model_map["model"])
    model["head"] = entry.head
    model.update(entry.model_options or {})
    if entry.head in PROTOTYPE_HEADS:
        model["num_prototypes"] = int(entry.K)
    if entry.head == "prototype":
        preset = _method_presets()[entry.variant]
        unknown = sorted(set(entry.method) - set(preset))
        if unknown:
            raise ExperimentError(f"{where}: unknown method key(s) {unknown}")
        changed = {k: v for k, v in sorted(entry.method.items()) if preset[k] != v}
        model["method_variant"] = entry.variant
        if changed:
            model["method"] = changed
    elif entry.method or entry.variant != "paper":
        raise ExperimentError(f"{where}: method/variant apply to the prototype head only")

    if entry.dataset not in scale["data"]["roots"]:
        raise ExperimentError(f"{where}: dataset {entry.dataset!r} has no root at this scale")
    data = {"dataset": entry.dataset, "root": scale["data"]["roots"][entry.dataset],
            **(scale["data"].get("common") or {})}
    if entry.top_n is not None:
        data["top_n"] = int(entry.top_n)
    data.update((scale.get("model_data") or {}).get(f"{entry.model}@{entry.dataset}", {}))

    optim_name = model_map["optim"]
    optim = {"name": optim_name, **(scale.get("optim", {}).get(optim_name) or {}),
             **(model_map.get("optim_options") or {})}  # per model, e.g. the SegFormer head lr x10
    try:
        sched = dict(scale["schedules"][entry.schedule])
    except KeyError:
        raise ExperimentError(f"{where}: schedule {entry.schedule!r} not in the scale's `schedules`") from None
    paper_iters = sched.pop("paper_iters", None)
    fixed = sched.pop("fixed", False)  # the smoke schedule: the same for every model
    train = {**(scale.get("train") or {}), **sched, **({} if fixed else model_map.get("train") or {})}
    if not fixed:  # the model's schedule for this vocabulary size (mini: longer for 150+ classes)
        train.update(vocabulary_train(model_map, entry.top_n or DATASET_CLASSES.get(entry.dataset, 0)))
    pretrain = scale.get("pretrain")
    if pretrain and not fixed and "pretrained" not in model:  # the smoke run stays self-contained
        model["pretrained"] = pretrained_path(scale, model["backbone"])
    if entry.head == "prototype" and paper_iters and scale.get("momentum_horizon"):
        _map_momentum(model, entry, int(paper_iters), int(train["iters"]))
    out = {"model": model, "data": data, "optim": optim, "train": train}
    for section, values in (entry.recipe_settings or {}).items():  # the entry's recipe (e.g. official)
        out[section] = {**out[section], **values}
    return out


def vocabulary_train(model_map: dict, num_classes: int) -> dict:
    """The train overrides of a scale's model for a vocabulary of ``num_classes``: the entry of
    ``train_by_classes`` (``{min_classes: {iters: ...}}``) with the largest ``min_classes`` not above it."""
    steps = {int(k): v for k, v in (model_map.get("train_by_classes") or {}).items() if int(k) <= num_classes}
    return dict(steps[max(steps)]) if steps else {}


def momentum_for_horizon(mu: float, paper_iters: int, iters: int) -> float:
    """The per-step momentum that keeps Eq. 14's horizon at a shorter schedule: after ``iters`` steps
    at the result, the initial prototypes keep the share ``mu ** paper_iters`` that the paper's
    ``paper_iters`` steps at ``mu`` leave (mu_mini = mu ** (paper_iters / iters))."""
    return round(float(mu) ** (paper_iters / iters), 6)


def _map_momentum(model: dict, entry: Entry, paper_iters: int, iters: int) -> None:
    preset = _method_presets()[entry.variant]
    method = model.setdefault("method", {})
    mu = method.get("momentum", preset["momentum"])
    method["momentum"] = momentum_for_horizon(mu, paper_iters, iters)


def pretrained_path(scale: dict, backbone: str) -> str:
    """Where the scale's pre-training stage writes the backbone file of ``backbone``."""
    return f"{scale['pretrain']['dir']}/{backbone}.pt"


def pretrain_config(scale: dict, backbone: str) -> dict:
    """The engine config that pre-trains ``backbone`` once on the scale's pre-training set (softmax
    head; the first of the scale's models on that backbone gives the model and optimizer settings)."""
    pre = scale.get("pretrain")
    if not pre:
        raise ExperimentError(f"scale {scale.get('name')}: no `pretrain` section")
    maps = [m for m in scale["models"].values() if m["model"]["backbone"] == backbone]
    if not maps:
        raise ExperimentError(f"scale {scale.get('name')}: no model on backbone {backbone!r}")
    model = {**maps[0]["model"], "head": "softmax"}
    optim = {"name": maps[0]["optim"], **(scale.get("optim", {}).get(maps[0]["optim"]) or {}),
             **(maps[0].get("optim_options") or {}), **(pre.get("optim") or {}),
             **(pre.get("backbone_optim", {}).get(backbone) or {})}
    data = {"dataset": pre["dataset"], "root": pre["root"], **(scale["data"].get("common") or {}),
            **(pre.get("data") or {})}
    train = {**(scale.get("train") or {}), **pre["train"], **(pre.get("backbone_train", {}).get(backbone) or {})}
    return {"run": {"name": f"pretrain/{backbone}", "output_dir": f"{pre['runs_dir']}", "seed": 0},
            "model": model, "data": data, "optim": optim, "train": train,
            "tracking": {"experiment": f"{scale.get('name')}/pretrain", "entry": f"pretrain-{backbone}"}}


def pretrain_backbones(plan_runs) -> list[str]:
    """The backbones whose pre-trained files the runs read, in order."""
    return list(dict.fromkeys(r.config["model"]["backbone"] for r in plan_runs if r.config["model"].get("pretrained")))


def run_key(config: dict) -> str:
    """12 hex digits of the sha256 of the canonical JSON of a composed config."""
    return sha256_json(config)[:12]


SCALES_DIR = "configs/scales"  # the default folder of the scale files (pipeline config key scales_dir)


def scale_file(name: str, scales_dir: str | Path = SCALES_DIR) -> str:
    """The path of scale ``name``'s file, as the pipeline's stages depend on it."""
    return f"{scales_dir}/{name}.yaml"


def load_scale(name: str, scales_dir: str | Path = SCALES_DIR) -> dict:
    scale = _read_yaml(Path(scale_file(name, scales_dir)))
    scale.setdefault("name", name)
    return scale


def build_plan(pcfg: dict | None = None, **overrides) -> Plan:
    """Expand the experiment list of pipeline config ``pcfg`` into deduplicated runs."""
    pcfg = load_pipeline_config(None, overrides) if pcfg is None else {**pcfg, **overrides}
    scale = load_scale(pcfg["scale"], scales_dir := pcfg.get("scales_dir", SCALES_DIR))
    entries = expand_entries(_read_yaml(pcfg.get("experiments", "configs/experiments.yaml")))
    paper_tables = _read_yaml(pcfg.get("paper_tables", "configs/paper_tables.yaml"))
    runs: dict[str, Run] = {}
    entry_run: dict[str, str] = {}
    for e in entries:
        cfg = compose(e, scale)
        key = run_key(cfg)
        if key not in runs:
            res = {**scale["resources"]["default"], **scale["resources"].get(e.schedule, {})}
            runs[key] = Run(key=key, config=cfg, entries=[], dataset=e.dataset, schedule=e.schedule,
                            resources=res)
        runs[key].entries.append(e.id)
        entry_run[e.id] = key
    plan = Plan(scale=pcfg["scale"], seeds=list(pcfg.get("seeds", [0])), runs_dir=pcfg.get("runs_dir", "runs"),
                runs=runs, entries={e.id: e for e in entries}, entry_run=entry_run, paper_tables=paper_tables,
                scale_config=scale, scale_file=scale_file(pcfg["scale"], scales_dir))
    for e in entries:  # every paper reference must resolve
        if e.paper is not None:
            try:
                plan.paper_value(e)
            except (KeyError, IndexError, TypeError):
                raise ExperimentError(f"experiment {e.id}: paper reference {e.paper} not in the paper tables") from None
    return plan
