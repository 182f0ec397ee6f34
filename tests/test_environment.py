"""The environments agree on the torch version the tests run on: constraints-cpu.txt (CPU machines and
CI, through scripts/install.sh), environment.yml (GPU clusters: pip's CUDA build of the same version)
and pyproject.toml's bound, which admits that version and no other minor release."""
from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


def _pins(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        m = re.fullmatch(r"\s*(torch|torchvision)==([0-9.]+)\s*", line.split("#", 1)[0])
        if m:
            out[m.group(1)] = m.group(2)
    return out


def _constraints() -> dict[str, str]:
    pins = _pins((REPO / "constraints-cpu.txt").read_text().splitlines())
    assert set(pins) == {"torch", "torchvision"}
    return pins


def test_gpu_environment_installs_the_tested_torch_with_pip():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    # no conda PyTorch (its channel stops at 2.5): torch and torchvision come from pip, pinned as in CI
    assert not [d for d in conda if re.match(r"(pytorch|torchvision|pytorch-cuda|cudatoolkit)\b", d)], conda
    assert "pytorch" not in env.get("channels", [])
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert _pins(pip) == _constraints()
    assert pip[-1] == "-e .[dev]"  # the package last: its requirements are met by the pins above


def test_install_script_installs_the_pinned_cpu_torch():
    script = (REPO / "scripts/install.sh").read_text()
    torch = _constraints()["torch"]
    assert f'pip install "torch=={torch}"' in script and "-c constraints-cpu.txt" in script
    assert f'startswith("{torch}")' in script


def test_pyproject_torch_bound_is_the_tested_minor_release():
    text = (REPO / "pyproject.toml").read_text()
    deps = yaml.safe_load("[" + re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1) + "]")
    (spec,) = [Requirement(d).specifier for d in deps if Requirement(d).name == "torch"]
    tested = Version(_constraints()["torch"])
    assert spec.contains(tested)
    major, minor = tested.release[:2]
    assert not spec.contains(f"{major}.{minor - 1}.99") and not spec.contains(f"{major}.{minor + 1}.0")
    assert spec.contains(Version(metadata.version("torch")).public)  # the environment running this test
