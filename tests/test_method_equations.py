"""Each of the paper's Eqs. 5-14 has exactly one defining function in protoseg/.

A function defines an equation when its docstring starts with ``Eq. N`` or ``Eqs. N-M`` (so that
``grep -rn "Eq. 11" protoseg/`` lands on it); other mentions of an equation are references.
"""
import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "protoseg"
DEFINES = re.compile(r"^Eqs?\. (\d+)(?:-(\d+))?\b")


def defining_functions() -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            m = DEFINES.match(ast.get_docstring(node) or "")
            if m:
                first, last = int(m[1]), int(m[2] or m[1])
                for n in range(first, last + 1):
                    found.setdefault(n, []).append(f"{path.relative_to(PACKAGE.parent)}::{node.name}")
    return found


def test_each_equation_has_exactly_one_defining_function():
    found = defining_functions()
    for n in range(5, 15):
        assert len(found.get(n, [])) == 1, f"Eq. {n}: defined by {found.get(n, [])}, expected exactly one"
    expected = {5: "nearest_prototype", 6: "class_scores", 7: "ce_loss", 8: "sinkhorn_batched",
                9: "sinkhorn_batched", 10: "sinkhorn_batched", 11: "ppc_loss", 12: "ppd_loss",
                13: "total_loss", 14: "momentum_update"}
    assert {n: found[n][0].rsplit("::", 1)[1] for n in expected} == expected


def test_the_convention_is_detected():
    tree = ast.parse('def f():\n    """Eqs. 9-10: relaxed plan."""\n')
    m = DEFINES.match(ast.get_docstring(tree.body[0]))
    assert (m[1], m[2]) == ("9", "10")
    assert DEFINES.match("See Eq. 11 for the loss") is None
