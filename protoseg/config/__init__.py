"""Typed configs and presets, pure Python (yaml, dataclasses; never torch).

The experiment plan and the Snakefile import this package while the workflow is parsed; the engine,
the models and the method read the same objects.

- ``run``: ``RunConfig`` and its sections (``DataConfig``, ``OptimConfig``, ``TrainConfig``, ...),
  ``load_config`` (YAML + ``key=value`` overrides), ``ConfigError``.
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
from .run import (ConfigError, DataConfig, OptimConfig, RunConfig, RunSection, TrackingConfig, TrainConfig,
                  apply_overrides, flatten_dict, load_config)

__all__ = [
    "BACKBONE_NAMES", "DECODER_NAMES", "DIFFERENCES", "HEADS", "IGNORE_INDEX", "OFFICIAL", "PAPER",
    "PROTOTYPE_HEADS", "VARIANTS", "WIDE_IGNORE_INDEX", "ConfigError", "DataConfig", "MethodConfig",
    "ModelConfig", "OptimConfig", "PipelineConfigError", "RunConfig", "RunSection", "TrackingConfig",
    "TrainConfig", "apply_overrides", "backbone_family", "flatten_dict", "ignore_index", "load_config",
    "parse_seeds",
]
