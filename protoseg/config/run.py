"""The run configuration: typed sections, validation, ``key=value`` overrides, the resolved file.

A config file (YAML) has five sections; every key is optional and has the default below::

    run:      name, output_dir, seed
    model:    the fields of ``protoseg.config.ModelConfig`` (``num_classes`` defaults to the dataset's)
    data:     DataConfig  (dataset, root, mini, sizes overriding the recipe, loader workers)
    optim:    OptimConfig (sgd | adamw, lr, weight decay, head lr multiplier, poly + warm-up)
    train:    TrainConfig (iterations, global batch, accumulation, AMP, intervals, determinism)
    tracking: TrackingConfig (MLflow experiment = paper table, row, column, paper value)

``load_config(path, overrides)`` reads the file, applies overrides such as ``train.iters=100`` or
``model.method.momentum=0.99`` (values parsed as YAML; numbers as people write them: ``6e-5`` and
``1e3`` are floats in files and overrides alike, which YAML 1.1 reads as strings), and validates: an unknown key is an error
listing the valid keys of its section. ``RunConfig.to_dict()`` is what ``train`` writes beside the run
(``config.yaml``), with the model config resolved (every ``None`` default filled in).
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .model import ModelConfig


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key or the file."""


class NumberLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``6e-5``, ``1e3``, ``-2E+4`` as floats (YAML 1.2's rule;
    PyYAML's YAML 1.1 wants a dot and a signed exponent)."""


NumberLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def load_yaml(text: str) -> Any:
    """YAML with :class:`NumberLoader` (configs and overrides)."""
    return yaml.load(text, Loader=NumberLoader)  # noqa: S506 - a SafeLoader subclass


@dataclass(frozen=True)
class RunSection:
    name: str = "run"  # folder name under output_dir
    output_dir: str = "runs"
    seed: int = 0  # rank r seeds python/numpy/torch with seed + r (model init uses seed on every rank)


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "ade20k"  # a name of protoseg.data.specs.DATASETS
    root: str = ""  # the prepared root (``protoseg prepare``)
    mini: bool = False  # sizes of the miniature twins
    top_n: int | None = None  # ade20k-full label set
    crop_size: list[int] | None = None  # [h, w]; None: the recipe's
    base_scale: list[int] | None = None  # [long, short]
    ratio_range: list[float] | None = None
    test_scale: list[int] | None = None  # [long, short]
    test_mode: str | None = None  # whole | slide; None: the dataset's
    photometric: bool = True
    train_split: str | None = None
    eval_split: str | None = None
    num_workers: int = 2
    cache_decoded: bool = False  # keep decoded training images in memory after the first epoch (small data)
    eval_batch_size: int = 1
    # the official release's recipe switches (docs/fidelity.md); None: the dataset's (MMSegmentation)
    augmentation: str | None = None  # mmseg | openseg
    normalisation: str | None = None  # mmseg | openseg
    test_resize: bool | None = None  # False: test at the image's own size
    class_weight: list[float] | None = None  # per-class CE weights (the release's FSCELoss ce_weight)


@dataclass(frozen=True)
class OptimConfig:
    name: str = "sgd"  # sgd | adamw
    lr: float = 0.01
    momentum: float = 0.9  # sgd
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw
    weight_decay: float = 5e-4
    no_decay_norm_pos: bool = True  # no weight decay on norm layers and position embeddings
    head_lr_mult: float = 1.0  # lr multiplier of everything outside the backbone (SegFormer: 10)
    # lr multiplier of the backbone: 1 fine-tunes it in full (the paper); 0 freezes it (no gradient,
    # normalisation statistics kept: the mini scale's pre-trained micro backbones)
    backbone_lr_mult: float = 1.0
    poly_power: float = 0.9
    min_lr: float = 1e-4
    warmup_iters: int = 0  # linear warm-up
    warmup_ratio: float = 1e-6  # lr factor at iteration 0 of the warm-up

    @classmethod
    def preset(cls, name: str) -> "OptimConfig":
        """The paper's two recipes (shared/spec/recipes.md)."""
        if name == "sgd":
            return cls()
        if name == "adamw":
            return cls(name="adamw", lr=6e-5, weight_decay=0.01, head_lr_mult=10.0, poly_power=1.0,
                       min_lr=0.0, warmup_iters=1500)
        raise ConfigError(f"optim.name={name!r}: expected sgd or adamw")


@dataclass(frozen=True)
class TrainConfig:
    iters: int = 80000
    batch_size: int = 16  # GLOBAL batch: split over ranks and accumulation steps
    grad_accum: int = 1
    amp: str = "none"  # none | bf16 | fp16 (CUDA only; ignored with a warning on CPU)
    deterministic: bool = False  # torch.use_deterministic_algorithms; bitwise resume on CPU
    log_interval: int = 50  # train_log.jsonl rows and progress-bar refresh
    val_interval: int = 0  # 0: validate only at the end
    ckpt_interval: int = 1000
    keep_ckpts: int = 3  # newest periodic checkpoints kept (0: all)
    # full: final.pt holds everything a resume needs (optimizer, scheduler, RNG); weights: final.pt holds
    # the model and config only and the periodic checkpoints are deleted once it is written (a finished
    # run keeps what evaluation needs: about 1/3 of the disk with AdamW, 1/2 with SGD momentum);
    # weights_fp16: the same with floating-point tensors stored in float16 (half again; metrics.json is
    # computed before, in float32; a later `protoseg evaluate` of final.pt sees float16-rounded weights)
    final_ckpt: str = "full"
    final_eval: bool = True
    progress: bool = True
    max_grad_norm: float = 0.0  # 0: no clipping
    # every loss on labels subsampled (nearest) by this stride, to the decoder's grid: 1 = MMSegmentation's
    # loss at image resolution; the mini scale uses 2 (its decoders are at stride 2; docs/mini_recipe.md)
    label_stride: int = 1
    # global: each rank's loss means are reweighted by its share of the global labelled pixels, so the
    # DDP gradient equals one process's on the global batch (independent of the GPU count);
    # per_rank: each rank averages over its own pixels, as MMSegmentation and the release do
    loss_reduction: str = "global"
    sync_bn: str = "auto"  # auto: synchronised BN when world > 1 (CUDA SyncBatchNorm; gloo CPUSyncBatchNorm) | on | off


@dataclass(frozen=True)
class TrackingConfig:
    experiment: str = ""  # MLflow experiment (one per paper table), e.g. "table3"
    entry: str = ""  # the table entry (one MLflow run per entry and seed)
    table: str = ""
    row: str = ""
    column: str = ""
    paper_value: float | None = None
    metric: str = "mIoU"  # the metric compared with paper_value


SECTIONS: dict[str, type] = {"run": RunSection, "data": DataConfig, "optim": OptimConfig,
                             "train": TrainConfig, "tracking": TrackingConfig}


@dataclass(frozen=True)
class RunConfig:
    run: RunSection
    model: ModelConfig  # resolved
    data: DataConfig
    optim: OptimConfig
    train: TrainConfig
    tracking: TrackingConfig

    @property
    def run_dir(self) -> Path:
        return Path(self.run.output_dir) / self.run.name

    def to_dict(self) -> dict[str, Any]:
        out = {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}
        out["model"] = self.model.to_dict()
        return {k: out[k] for k in ("run", "model", "data", "optim", "train", "tracking")}

    def dump(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "<config>") -> "RunConfig":
        """Validate a plain mapping. Missing keys take defaults; ``optim.name`` alone selects the
        recipe preset (``adamw`` gives lr 6e-5, weight decay 0.01, head x10, warm-up 1500)."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping at the top level")
        valid = ("run", "model", "data", "optim", "train", "tracking")
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ConfigError(f"{source}: unknown section(s) {unknown}; valid sections: {', '.join(valid)}")
        sections: dict[str, Any] = {}
        for name, kind in SECTIONS.items():
            raw = data.get(name) or {}
            base = OptimConfig.preset(raw.get("name", "sgd")) if kind is OptimConfig else kind()
            sections[name] = _build(kind, raw, base, f"{source}: {name}")
        sections["model"] = _model_config(data.get("model") or {}, sections["data"], source)
        cfg = cls(**sections)
        cfg.validate(source)
        return cfg

    def validate(self, source: str = "<config>") -> None:
        o, t, d = self.optim, self.train, self.data
        _require(o.name in ("sgd", "adamw"), source, "optim.name", o.name, "sgd or adamw")
        _require(o.lr > 0, source, "optim.lr", o.lr, "> 0")
        _require(o.weight_decay >= 0, source, "optim.weight_decay", o.weight_decay, ">= 0")
        _require(o.warmup_iters >= 0, source, "optim.warmup_iters", o.warmup_iters, ">= 0")
        _require(0 < o.warmup_ratio <= 1, source, "optim.warmup_ratio", o.warmup_ratio, "in (0, 1]")
        _require(o.min_lr >= 0, source, "optim.min_lr", o.min_lr, ">= 0")
        _require(o.backbone_lr_mult >= 0, source, "optim.backbone_lr_mult", o.backbone_lr_mult,
                 ">= 0 (0 freezes the backbone)")
        _require(t.iters >= 1, source, "train.iters", t.iters, ">= 1")
        _require(t.batch_size >= 1, source, "train.batch_size", t.batch_size, ">= 1")
        _require(t.grad_accum >= 1, source, "train.grad_accum", t.grad_accum, ">= 1")
        _require(t.batch_size % t.grad_accum == 0, source, "train.batch_size", t.batch_size,
                 f"a multiple of train.grad_accum={t.grad_accum}")
        _require(t.amp in ("none", "bf16", "fp16"), source, "train.amp", t.amp, "none, bf16 or fp16")
        _require(t.loss_reduction in ("global", "per_rank"), source, "train.loss_reduction",
                 t.loss_reduction, "global or per_rank")
        _require(t.sync_bn in ("auto", "on", "off"), source, "train.sync_bn", t.sync_bn, "auto, on or off")
        _require(t.final_ckpt in ("full", "weights", "weights_fp16"), source, "train.final_ckpt", t.final_ckpt,
                 "full, weights or weights_fp16")
        for key in ("log_interval", "ckpt_interval", "label_stride"):
            _require(getattr(t, key) >= 1, source, f"train.{key}", getattr(t, key), ">= 1")
        _require(t.val_interval >= 0, source, "train.val_interval", t.val_interval, ">= 0")
        _require(d.test_mode in (None, "whole", "slide"), source, "data.test_mode", d.test_mode,
                 "whole or slide")
        _require(d.num_workers >= 0, source, "data.num_workers", d.num_workers, ">= 0")
        for key in ("augmentation", "normalisation"):
            _require(getattr(d, key) in (None, "mmseg", "openseg"), source, f"data.{key}", getattr(d, key),
                     "mmseg or openseg")
        r, m = self.run, self.model
        _require(0 <= r.seed < 2 ** 32, source, "run.seed", r.seed, "in [0, 2**32) (numpy's seed range)")
        _require(d.eval_batch_size >= 1, source, "data.eval_batch_size", d.eval_batch_size, ">= 1")
        _require(0 <= o.momentum < 1, source, "optim.momentum", o.momentum, "in [0, 1)")
        for key in ("poly_power", "head_lr_mult"):
            _require(getattr(o, key) >= 0, source, f"optim.{key}", getattr(o, key), ">= 0")
        _require(t.keep_ckpts >= 0, source, "train.keep_ckpts", t.keep_ckpts, ">= 0 (0: keep all)")
        _require(t.max_grad_norm >= 0, source, "train.max_grad_norm", t.max_grad_norm, ">= 0 (0: no clipping)")
        if getattr(m, "drop_path_rate", None) is not None:
            _require(0 <= m.drop_path_rate < 1, source, "model.drop_path_rate", m.drop_path_rate, "in [0, 1)")
        self._validate_tracking(source)
        if d.class_weight is not None:
            n = getattr(self.model, "num_classes", None)
            _require(all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0
                         for w in d.class_weight) and (n is None or len(d.class_weight) == n),
                     source, "data.class_weight", d.class_weight, f"{n} non-negative numbers (one per class)")

    def _validate_tracking(self, source: str) -> None:
        """The names MLflow gets (experiment, run and tag values) are data: quotes, backslashes,
        spaces, ``=`` and any letters are fine; refused before training are what MLflow (or its SQL
        stores) cannot keep: over ``MAX_NAME_LENGTH`` characters, control characters (NUL, newline,
        tab, ...) and unpaired surrogates."""
        tr = self.tracking
        for key in TRACKING_NAMES:
            problem = tracking_name_problem(getattr(tr, key))
            _require(problem is None, source, f"tracking.{key}", _short(getattr(tr, key)), problem or "")
        _require(tr.metric in TRACKED_METRICS, source, "tracking.metric", tr.metric,
                 f"one of {', '.join(TRACKED_METRICS)}")
        if tr.paper_value is not None:
            _require(math.isfinite(tr.paper_value), source, "tracking.paper_value", tr.paper_value,
                     "a finite number (or leave it out)")

    def check_data(self):
        """Validate the config against its prepared data (before anything of a run is written): a
        complete root (``meta.json``), the dataset's class count and ignore value. Returns the
        ``DatasetSpec`` (``dataset_spec``)."""
        root = self.data.root
        if not root:
            raise ConfigError("data.root is empty: give the prepared root (data.root=/path/to/prepared)")
        if not (Path(root) / "meta.json").is_file():
            raise ConfigError(f"data.root={root}: not a complete prepared root (meta.json missing: "
                              "preparation never finished or failed); run `protoseg prepare` first")
        self.check_root_identity()
        spec = self.dataset_spec()
        if self.model.num_classes != spec.num_classes:
            raise ConfigError(f"model.num_classes={self.model.num_classes} but dataset {spec.name!r} has "
                              f"{spec.num_classes} classes")
        method = self.model.method
        if method is not None and method.ignore_index != spec.ignore_index:
            raise ConfigError(f"model.method.ignore_index={method.ignore_index} but dataset "
                              f"{spec.name!r} uses {spec.ignore_index}")
        return spec

    def check_root_identity(self, splits: tuple[str, ...] | None = None) -> None:
        """data.root must hold what the data section expects (dataset, class count or top-N vocabulary,
        ignore value, splits: ``protoseg.data.identity``); ConfigError otherwise."""
        from protoseg.data.errors import DataError
        from protoseg.data.identity import check_root_identity
        from protoseg.data.specs import get_spec

        d = self.data
        try:
            base = get_spec(d.dataset, mini=d.mini)
            top = d.top_n is not None and d.top_n != base.num_classes
            if splits is None:
                splits = (d.train_split or base.train_split, d.eval_split or base.eval_split)
            check_root_identity(d.root, dataset=d.dataset, num_classes=d.top_n if top else base.num_classes,
                                label_dir=f"labels_top{d.top_n}" if top else base.label_dir,
                                ignore_index=base.ignore_index, splits=tuple(dict.fromkeys(splits)))
        except DataError as err:
            raise ConfigError(str(err)) from None

    def dataset_spec(self):
        """The ``DatasetSpec`` of the data section, with its size overrides applied."""
        from protoseg.data.specs import get_spec

        d = self.data
        spec = get_spec(d.dataset, top_n=d.top_n, mini=d.mini, root=d.root or None)
        repl: dict[str, Any] = {}
        for key in ("crop_size", "base_scale", "ratio_range", "test_scale"):
            if getattr(d, key) is not None:
                repl[key] = tuple(getattr(d, key))
        for key in ("test_mode", "train_split", "eval_split", "augmentation", "normalisation", "test_resize"):
            if getattr(d, key) is not None:
                repl[key] = getattr(d, key)
        return dataclasses.replace(spec, **repl) if repl else spec


def flatten_dict(d: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}``: nested config sections as dotted keys."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten_dict(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


MAX_NAME_LENGTH = 250  # MLflow's entity name limit (run names, keys); names longer are refused
TRACKED_METRICS = ("mIoU", "aAcc", "mAcc")  # the metrics.json values tracking.metric may name


TRACKING_NAMES = ("experiment", "entry", "table", "row", "column")


def tracking_name_problem(value: Any) -> str | None:
    """What MLflow cannot store about a tracking name (``expected ...`` text), or None if it can."""
    if not isinstance(value, str):
        return f"a string, got {type(value).__name__}"
    bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad is not None:
        return f"a name without control characters (found {bad!r})"
    if len(value) > MAX_NAME_LENGTH:
        return f"at most {MAX_NAME_LENGTH} characters (MLflow's limit for names), got {len(value)}"
    return None


def _short(text: Any, n: int = 60) -> Any:
    if not isinstance(text, str):
        return text
    return text if len(text) <= n else f"{text[:n]}..."


def _require(ok: bool, source: str, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{source}: {key}={value!r}: expected {expected}")


def _build(kind: type, raw: Any, base: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(kind)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {', '.join(fields)}")
    hints = typing.get_type_hints(kind)
    values = {}
    for key, value in raw.items():
        default = getattr(base, key)
        _check_value(f"{where}.{key}", value, hints.get(key, Any), default)
        values[key] = float(value) if isinstance(default, float) and isinstance(value, int) else value
    return dataclasses.replace(base, **values)


MAX_INT = 2 ** 53  # larger integers are refused: no setting needs them, and torch cannot hold some


def _check_value(where: str, value: Any, hint: Any, default: Any) -> None:
    """ConfigError unless ``value`` fits the annotation ``hint`` (the default's kind when it has
    one) and is a finite number of sane size where it is a number."""
    if value is None:
        if not _allows_none(hint):
            raise ConfigError(f"{where} is empty: expected {_describe(hint, default)}")
        return
    if (not _same_kind(value, default)) if default is not None else (not _matches(value, hint)):
        raise ConfigError(f"{where}={_short(value)!r}: expected {_describe(hint, default)}")
    for v in (value if isinstance(value, (list, tuple)) else [value]):
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{where}={value!r}: expected a finite number")
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_INT:
            raise ConfigError(f"{where}={value!r}: expected a number of at most 2**53 in size")


def _check_fields(kind: type, raw: dict[str, Any], where: str) -> None:
    """The types and finiteness of the known keys of ``raw`` against dataclass ``kind``'s fields (the
    model and method sections, whose own constructors check ranges and names)."""
    hints = typing.get_type_hints(kind)
    for f in dataclasses.fields(kind):
        if f.name in raw and f.name != "method":
            default = f.default if f.default is not dataclasses.MISSING else None
            _check_value(f"{where}.{f.name}", raw[f.name], hints.get(f.name, Any), default)


def _allows_none(hint: Any) -> bool:
    return hint is Any or type(None) in typing.get_args(hint)


def _non_none(hint: Any) -> list[Any]:
    return [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_args(hint) and (
        typing.get_origin(hint) in (typing.Union, types.UnionType)) else [hint]


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the annotation ``hint`` (int, float, bool, str, list[...], optional)."""
    for h in _non_none(hint):
        if h is Any:
            return True
        origin = typing.get_origin(h)
        if origin in (list, tuple):
            (item,) = typing.get_args(h)[:1] or (Any,)
            if isinstance(value, (list, tuple)) and all(_matches(v, item) for v in value):
                return True
        elif h is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return True
        elif h is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return True
        elif isinstance(h, type) and isinstance(value, h):
            return True
    return False


def _describe(hint: Any, default: Any) -> str:
    names = []
    for h in _non_none(hint):
        origin = typing.get_origin(h)
        if origin in (list, tuple):
            (item,) = typing.get_args(h)[:1] or (Any,)
            names.append(f"a list of {getattr(item, '__name__', 'values')}s")
        else:
            name = getattr(h, "__name__", str(h))
            names.append(f"{'an' if name[0] in 'aeiou' else 'a'} {name}")
    text = " or ".join(names)
    if _allows_none(hint):
        text += " (or leave it out)"
    return f"{text}, like the default {default!r}" if default is not None else text


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def _model_config(raw: Any, data: DataConfig, source: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: model: expected a mapping")
    raw = dict(raw)
    method = raw.get("method")
    if method is not None and not isinstance(method, dict):
        raise ConfigError(f"{source}: model.method={method!r}: expected a mapping of method settings")
    _check_fields(ModelConfig, raw, f"{source}: model")
    if isinstance(method, dict):
        from .method import MethodConfig

        _check_fields(MethodConfig, method, f"{source}: model.method")
    if isinstance(method, dict):
        # a partial method section (e.g. the override model.method.update_assignment=gumbel) starts from
        # the preset of this model: its K and its variant
        method = dict(method)
        if "num_prototypes" in method and "num_prototypes" not in raw:
            raw["num_prototypes"] = method["num_prototypes"]
        method.setdefault("num_prototypes", raw.get("num_prototypes", 10))
        method.setdefault("variant", raw.get("method_variant", "paper"))
        raw["method"] = method
    if "num_classes" not in raw:
        try:
            raw["num_classes"] = _dataset_num_classes(data)
        except Exception as err:  # noqa: BLE001 - reported with the key that needs it
            raise ConfigError(f"{source}: model.num_classes not given and the dataset's is unknown: {err}")
    try:
        return ModelConfig.from_dict(raw).resolved()
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{source}: model: {err}") from None


def _dataset_num_classes(data: DataConfig) -> int:
    from protoseg.data.specs import get_spec

    return get_spec(data.dataset, top_n=data.top_n, root=data.root or None).num_classes


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.iters=100"`` -> (["train", "iters"], 100); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. train.iters=100")
    key, value = text.split("=", 1)
    path = [p for p in key.strip().split(".")]
    if len(path) < 2 or not all(path):
        raise ConfigError(f"override {text!r}: the key must be section.key, e.g. optim.lr=0.02")
    try:
        parsed = load_yaml(value) if value.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: value is not valid YAML: {err}") from None
    return path, parsed


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each ``a.b.c=value`` into a copy of ``data`` (intermediate mappings are created; an unknown
    key is caught by validation, which lists the valid ones)."""
    import copy

    out = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            elif not isinstance(nxt, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
            node = nxt
        node[path[-1]] = value
    return out


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read ``path`` (YAML; ``None``: all defaults), apply ``overrides``, validate."""
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = load_yaml(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not a text file (not UTF-8); expected a YAML config") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from None
        except OSError as err:
            raise ConfigError(f"{path}: cannot read the config ({err.strerror})") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of sections (run, model, data, optim, train, "
                              f"tracking) at the top level, got a {type(data).__name__}")
    if overrides:
        source = f"{source} + overrides"
    return RunConfig.from_dict(apply_overrides(data, list(overrides)), source=source)
