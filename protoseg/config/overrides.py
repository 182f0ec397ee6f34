"""Dotted keys: ``key=value`` overrides applied to a config mapping, and a mapping flattened to
its dotted keys."""
from __future__ import annotations

import copy
from typing import Any

import yaml

from .errors import ConfigError
from .yaml_numbers import load_yaml


def flatten_dict(d: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}``: nested config sections as dotted keys."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten_dict(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out



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

