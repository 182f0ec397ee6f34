"""Typed configs and presets, pure Python (yaml, dataclasses; never torch).

The experiment plan and the Snakefile import this package while the workflow is parsed; the engine,
the models and the method read the same objects.

- ``run``: ``RunConfig`` of the sections below and ``RunSection``, ``load_config`` (YAML +
  ``key=value`` overrides).
- ``data``, ``optim``, ``training``, ``tracking``: one section each (``DataConfig``, ``OptimConfig``,
  ``TrainConfig``, ``TrackingConfig`` and the names MLflow can store).
- ``overrides``: ``key=value`` overrides, ``flatten_dict``; ``yaml_numbers``: YAML with ``6e-5`` a float;
  ``field_checks``: values against their fields; ``errors``: ``ConfigError``.
- ``model``: ``ModelConfig``; the backbone, decoder and head names; backbone defaults.
- ``method``: ``MethodConfig`` with the ``paper`` and ``official`` presets (``VARIANTS``) and the
  seven ``DIFFERENCES``.
- ``datasets``: label ignore values (255; 65535 for ADE20K-Full).
- ``pipeline``: seeds parsing, the prepared-root pattern of a scale, pipeline file names.
"""
from .datasets import IGNORE_INDEX, WIDE_IGNORE_INDEX, ignore_index
from .method import DIFFERENCES, OFFICIAL, PAPER, VARIANTS, MethodConfig
from .model import BACKBONE_NAMES, DECODER_NAMES, HEADS, PROTOTYPE_HEADS, ModelConfig, backbone_family
from .pipeline import PipelineConfigError, parse_seeds
from .data import DataConfig
from .errors import ConfigError
from .optim import OptimConfig
from .overrides import apply_overrides, flatten_dict
from .run import RunConfig, RunSection, load_config
from .tracking import TrackingConfig
from .training import TrainConfig

__all__ = [
    "BACKBONE_NAMES", "DECODER_NAMES", "DIFFERENCES", "HEADS", "IGNORE_INDEX", "OFFICIAL", "PAPER",
    "PROTOTYPE_HEADS", "VARIANTS", "WIDE_IGNORE_INDEX", "ConfigError", "DataConfig", "MethodConfig",
    "ModelConfig", "OptimConfig", "PipelineConfigError", "RunConfig", "RunSection", "TrackingConfig",
    "TrainConfig", "apply_overrides", "backbone_family", "flatten_dict", "ignore_index", "load_config",
    "parse_seeds",
]
