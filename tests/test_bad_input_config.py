"""Bad config overrides, property-based (issue 19 item 3): for every key of every section of the run
config (run, data, optim, train, tracking, model, model.method), hypothesis draws an override of a
kind that key must refuse (wrong type, NaN/inf, a huge integer, empty, a list or mapping for a
scalar, a scalar for a list, an unknown key) and runs ``protoseg train`` in-process
(``protoseg.cli.main``). The contract (docs/errors.md): exit 2, one ``error:`` line naming the key,
no traceback, nothing written. Example counts are bounded so this stays in the fast tier."""
from __future__ import annotations

import dataclasses
import types
import typing
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine_helpers import tiny_config, write_config
from protoseg.cli import main
from protoseg.config.method import MethodConfig
from protoseg.config.model import ModelConfig
from protoseg.config.run import SECTIONS


def _kind(hint) -> str:
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    h = [a for a in typing.get_args(hint) if a is not type(None)][0] if union else hint
    origin = typing.get_origin(h)
    if origin in (list, tuple):
        return "list"
    return {bool: "bool", int: "int", float: "float", str: "str"}.get(h, "other")


def _optional(hint) -> bool:
    return type(None) in typing.get_args(hint)


def _fields() -> list[tuple[str, str, bool]]:
    """(dotted key, kind, optional) of every config key."""
    out = []
    for section, kind in [*SECTIONS.items(), ("model", ModelConfig), ("model.method", MethodConfig)]:
        hints = typing.get_type_hints(kind)
        for f in dataclasses.fields(kind):
            if section == "model" and f.name == "method":
                continue
            out.append((f"{section}.{f.name}", _kind(hints[f.name]), _optional(hints[f.name])))
    return out


FIELDS = _fields()
# per kind of key: values (YAML text) it must refuse
WRONG = {
    "int": ["abc", "1.5", "[1, 2]", "{a: 1}", "true", "1000000000000000000000000000000", ".nan"],
    "float": ["abc", "[1, 2]", "{a: 1}", "true", ".nan", ".inf", "-.inf"],
    "bool": ["abc", "2", "[true]", "{a: 1}", "0.5"],
    "str": ["[a, b]", "{a: 1}"],
    "list": ["abc", "{a: 1}", "[abc, def]", "[.nan, 1]"],
}


@st.composite
def bad_override(draw):
    key, kind, optional = draw(st.sampled_from([f for f in FIELDS if f[1] in WRONG]))
    choices = list(WRONG[kind])
    if not optional:
        choices.append("")  # empty: only a key with a None default may be left empty
    value = draw(st.sampled_from(choices))
    if kind == "str" and draw(st.booleans()):
        # a mapping nested under a string key, written as a deeper override: a.b.c=1
        return key, f"{key}.deeper=1"
    return key, f"{key}={value}"


@st.composite
def unknown_key(draw):
    section = draw(st.sampled_from(["run", "data", "optim", "train", "tracking", "model", "model.method"]))
    name = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=3, max_size=20))
    known = {k.rsplit(".", 1)[1] for k, _, _ in FIELDS if k.rsplit(".", 1)[0] == section}
    name = name if name not in known and name != "method" else f"{name}_x"
    return name, f"{section}.{name}={draw(st.sampled_from(['1', 'abc', '[1]', '']))}"


def EXAMPLES(n: int) -> int:  # noqa: N802 - bounded in the fast tier; BAD_INPUT_EXAMPLES=x10 for a deep run
    return n * int(os.environ.get("BAD_INPUT_EXAMPLES", "1"))


def _tree(path: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad_config")
    return write_config(tiny_config(Path("/nonexistent/prepared"), tmp / "runs"), tmp / "c.yaml"), tmp


def _check(capsys, config_file, override, name):
    path, tmp = config_file
    before = _tree(tmp)
    code = main(["train", "--config", str(path), override])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (override, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), (override, err)
    assert name in lines[0], (override, lines[0])
    assert _tree(tmp) == before and not (tmp / "runs").exists()  # nothing written


@settings(max_examples=EXAMPLES(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=bad_override())
def test_a_bad_value_of_any_key_is_refused_naming_it(case, config_file, capsys):
    key, override = case
    _check(capsys, config_file, override, key)


@settings(max_examples=EXAMPLES(20), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=unknown_key())
def test_an_unknown_key_is_refused_naming_it(case, config_file, capsys):
    name, override = case
    _check(capsys, config_file, override, name)


@pytest.mark.parametrize("override,key", [
    ("run.seed=-1", "run.seed"), ("data.eval_batch_size=0", "data.eval_batch_size"),
    ("optim.momentum=1.5", "optim.momentum"), ("optim.poly_power=-1", "optim.poly_power"),
    ("optim.head_lr_mult=-2", "optim.head_lr_mult"), ("train.keep_ckpts=-1", "train.keep_ckpts"),
    ("train.max_grad_norm=-1", "train.max_grad_norm"), ("model.drop_path_rate=-0.1", "model.drop_path_rate"),
    ("model.dropout=abc", "model.dropout"), ("model.method.momentum=true", "model.method.momentum"),
    ("optim.betas=[abc, def]", "optim.betas"), ("data.crop_size=[a, 32]", "data.crop_size"),
    ("model.method.num_prototypes=", "model.method.num_prototypes"),
    ("model.method.variant=[a]", "model.method.variant"), ("optim.lr=.inf", "optim.lr"),
    ("train.iters=1e400", "train.iters"), ("data.crop_size=[.nan, 3]", "data.crop_size"),
])
def test_out_of_range_values_found_by_the_suite(override, key, config_file, capsys):
    """The values the property tests found accepted (or crashing with a TypeError) before the fix."""
    _check(capsys, config_file, override, key)
