"""The run configuration: ``RunConfig`` of typed sections, its validation, ``load_config``.

A config file (YAML) has five sections; every key is optional and has the default in its module::

    run:      name, output_dir, seed                                            (``RunSection``, here)
    model:    the fields of ``protoseg.config.ModelConfig`` (``num_classes`` defaults to the dataset's)
    data:     DataConfig  (dataset, root, mini, sizes overriding the recipe, loader workers; ``data.py``)
    optim:    OptimConfig (sgd | adamw, lr, weight decay, head lr multiplier, poly + warm-up; ``optim.py``)
    train:    TrainConfig (iterations, global batch, accumulation, AMP, intervals; ``training.py``)
    tracking: TrackingConfig (MLflow experiment = paper table, row, column, paper value; ``tracking.py``)

``load_config(path, overrides)`` reads the file, applies overrides such as ``train.iters=100`` or
``model.method.momentum=0.99`` (``overrides.py``; values parsed as YAML, numbers as people write
them: ``yaml_numbers.py``), and validates (``field_checks.py``): an unknown key is an error listing
the valid keys of its section. ``RunConfig.to_dict()`` is what ``train`` writes beside the run
(``config.yaml``), with the model config resolved (every ``None`` default filled in).
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .data import DataConfig
from .errors import ConfigError
from .field_checks import build_section, check_fields, check_value, require
from .model import ModelConfig
from .optim import OptimConfig
from .overrides import apply_overrides
from .tracking import TrackingConfig, check_tracking
from .training import TrainConfig
from .yaml_numbers import load_yaml


@dataclass(frozen=True)
class RunSection:
    name: str = "run"  # folder name under output_dir
    output_dir: str = "runs"
    seed: int = 0  # rank r seeds python/numpy/torch with seed + r (model init uses seed on every rank)


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
            sections[name] = build_section(kind, raw, base, f"{source}: {name}")
        sections["model"] = _model_config(data.get("model") or {}, sections["data"], source)
        cfg = cls(**sections)
        cfg.validate(source)
        return cfg

    def validate(self, source: str = "<config>") -> None:
        o, t, d = self.optim, self.train, self.data
        require(o.name in ("sgd", "adamw"), source, "optim.name", o.name, "sgd or adamw")
        require(o.lr > 0, source, "optim.lr", o.lr, "> 0")
        require(o.weight_decay >= 0, source, "optim.weight_decay", o.weight_decay, ">= 0")
        require(o.warmup_iters >= 0, source, "optim.warmup_iters", o.warmup_iters, ">= 0")
        require(0 < o.warmup_ratio <= 1, source, "optim.warmup_ratio", o.warmup_ratio, "in (0, 1]")
        require(o.min_lr >= 0, source, "optim.min_lr", o.min_lr, ">= 0")
        require(o.backbone_lr_mult >= 0, source, "optim.backbone_lr_mult", o.backbone_lr_mult,
                 ">= 0 (0 freezes the backbone)")
        require(t.iters >= 1, source, "train.iters", t.iters, ">= 1")
        require(t.batch_size >= 1, source, "train.batch_size", t.batch_size, ">= 1")
        require(t.grad_accum >= 1, source, "train.grad_accum", t.grad_accum, ">= 1")
        require(t.batch_size % t.grad_accum == 0, source, "train.batch_size", t.batch_size,
                 f"a multiple of train.grad_accum={t.grad_accum}")
        require(t.amp in ("none", "bf16", "fp16"), source, "train.amp", t.amp, "none, bf16 or fp16")
        require(t.loss_reduction in ("global", "per_rank"), source, "train.loss_reduction",
                 t.loss_reduction, "global or per_rank")
        require(t.sync_bn in ("auto", "on", "off"), source, "train.sync_bn", t.sync_bn, "auto, on or off")
        require(t.final_ckpt in ("full", "weights", "weights_fp16"), source, "train.final_ckpt", t.final_ckpt,
                 "full, weights or weights_fp16")
        for key in ("log_interval", "ckpt_interval", "label_stride"):
            require(getattr(t, key) >= 1, source, f"train.{key}", getattr(t, key), ">= 1")
        require(t.val_interval >= 0, source, "train.val_interval", t.val_interval, ">= 0")
        require(d.test_mode in (None, "whole", "slide"), source, "data.test_mode", d.test_mode,
                 "whole or slide")
        require(d.num_workers >= 0, source, "data.num_workers", d.num_workers, ">= 0")
        for key in ("augmentation", "normalisation"):
            require(getattr(d, key) in (None, "mmseg", "openseg"), source, f"data.{key}", getattr(d, key),
                     "mmseg or openseg")
        r, m = self.run, self.model
        require(0 <= r.seed < 2 ** 32, source, "run.seed", r.seed, "in [0, 2**32) (numpy's seed range)")
        require(d.eval_batch_size >= 1, source, "data.eval_batch_size", d.eval_batch_size, ">= 1")
        require(0 <= o.momentum < 1, source, "optim.momentum", o.momentum, "in [0, 1)")
        for key in ("poly_power", "head_lr_mult"):
            require(getattr(o, key) >= 0, source, f"optim.{key}", getattr(o, key), ">= 0")
        require(t.keep_ckpts >= 0, source, "train.keep_ckpts", t.keep_ckpts, ">= 0 (0: keep all)")
        require(t.max_grad_norm >= 0, source, "train.max_grad_norm", t.max_grad_norm, ">= 0 (0: no clipping)")
        if getattr(m, "drop_path_rate", None) is not None:
            require(0 <= m.drop_path_rate < 1, source, "model.drop_path_rate", m.drop_path_rate, "in [0, 1)")
        check_tracking(self.tracking, source)
        if d.class_weight is not None:
            n = getattr(self.model, "num_classes", None)
            require(all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0
                         for w in d.class_weight) and (n is None or len(d.class_weight) == n),
                     source, "data.class_weight", d.class_weight, f"{n} non-negative numbers (one per class)")
        if d.class_weight_power is not None:
            require(isinstance(d.class_weight_power, (int, float)) and not isinstance(d.class_weight_power, bool)
                    and d.class_weight_power >= 0, source, "data.class_weight_power", d.class_weight_power,
                    "a number >= 0")
            require(d.class_weight is None, source, "data.class_weight_power", d.class_weight_power,
                    "null when data.class_weight lists the weights (one source of class weights)")


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
        if self.model.head == "prototype" and 0 <= spec.ignore_index < spec.num_classes:
            raise ConfigError(f"dataset {spec.name!r} marks unlabelled pixels {spec.ignore_index}, a class id "
                              f"of its 0..{spec.num_classes - 1}: the prototype head needs a value outside")
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


def _model_config(raw: Any, data: DataConfig, source: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: model: expected a mapping")
    raw = dict(raw)
    method = raw.get("method")
    if method is not None and not isinstance(method, dict):
        raise ConfigError(f"{source}: model.method={method!r}: expected a mapping of method settings")
    if isinstance(method, dict):
        from .method import MethodConfig

        # a partial method section (e.g. model.method.update_assignment=gumbel) overrides the preset of
        # model.method_variant (ModelConfig.from_dict); keys that moved to the model section go there first
        raw["method"] = method = _moved_method_keys(raw, dict(method), data, source)
        check_fields(MethodConfig, method, f"{source}: model.method")
    check_fields(ModelConfig, raw, f"{source}: model")
    if "num_classes" not in raw:
        try:
            raw["num_classes"] = _dataset_num_classes(data)
        except Exception as err:  # noqa: BLE001 - reported with the key that needs it
            raise ConfigError(f"{source}: model.num_classes not given and the dataset's is unknown: {err}")
    try:
        return ModelConfig.from_dict(raw).resolved()
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{source}: model: {err}") from None


# method keys that moved to their one home; run.yaml files and checkpoints written before still load
_MOVED_METHOD_KEYS: dict[str, str] = {"variant": "method_variant", "num_prototypes": "num_prototypes",
                                      "align_corners": "align_corners"}


def _moved_method_keys(raw: dict, method: dict, data: DataConfig, source: str) -> dict:
    """``method`` without the keys that now live in the model section (moved into ``raw`` unless it
    sets them otherwise: then a ConfigError) or in the dataset (``ignore_index``, checked against it)."""
    hints = typing.get_type_hints(ModelConfig)
    for key, home in _MOVED_METHOD_KEYS.items():
        if key in method:
            value = method.pop(key)
            check_value(f"{source}: model.method.{key}", value, hints[home], getattr(ModelConfig, home))
            if raw.setdefault(home, value) != value:
                raise ConfigError(f"{source}: model.method.{key}={value!r} differs from model.{home}="
                                  f"{raw[home]!r}: set it once, as model.{home}")
    if "ignore_index" in method:
        from .datasets import ignore_index

        value, used = method.pop("ignore_index"), ignore_index(data.dataset)
        if value != used:
            raise ConfigError(f"{source}: model.method.ignore_index={value!r} but dataset {data.dataset!r} "
                              f"uses {used} (the dataset's value is the one used)")
    return method


def _dataset_num_classes(data: DataConfig) -> int:
    from protoseg.data.specs import get_spec

    return get_spec(data.dataset, top_n=data.top_n, root=data.root or None).num_classes



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
