"""YAML as configs are read: ``6e-5`` and ``1e3`` are floats in files and overrides alike (YAML 1.2's
rule), which YAML 1.1 (PyYAML) reads as strings."""
from __future__ import annotations

import re
from typing import Any

import yaml


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
