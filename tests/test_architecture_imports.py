"""The package's structure: no import circle anywhere in protoseg/, short functions and short modules.

The import graph is read from the source (ast), function-level imports included: an edge goes from
a module to every protoseg module it names (``from a.b import c`` names ``a.b.c`` when that is a
module, else ``a.b``). The parent packages that Python also runs on import are not edges: a package
``__init__`` re-exporting its own submodules is not a circle.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "protoseg"
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400
# the function length is held everywhere in the package: one test per subpackage or top-level module
SHORT_FUNCTIONS = sorted(str(p.relative_to(ROOT)) for p in PACKAGE.iterdir()
                         if p.suffix == ".py" or (p.is_dir() and any(p.glob("*.py"))))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path: Path, known: set[str], name: str | None = None) -> set[str]:
    """The protoseg modules that ``path`` (module ``name``) imports, at any level of the file."""
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = {f"{target}.{alias.name}" for alias in node.names} & known
            found |= subs or {target}
            if subs and len(subs) < len(node.names):
                found.add(target)  # names from the package itself besides its submodules
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imported_modules(path, set(mods)) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_import_graph_has_no_circle():
    graph = import_graph()
    assert graph["protoseg.data.prepare"] >= {"protoseg.data.ranking", "protoseg.data.parallel"}
    assert "protoseg.data.prepare" not in graph["protoseg.data.ranking"]
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_graph_reader_sees_function_level_and_relative_imports(tmp_path):
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    known = set(modules())
    assert imported_modules(PACKAGE / "data" / "ranking.py", known) >= {"protoseg.data.parallel",
                                                                       "protoseg.atomic_io"}
    # ranking.py once imported prepare inside a function, which closed the circle
    fake = tmp_path / "ranking.py"
    fake.write_text("from . import parallel\n\ndef f():\n    from protoseg.data.prepare import prepare\n")
    assert imported_modules(fake, known, "protoseg.data.ranking") == {"protoseg.data.parallel",
                                                                      "protoseg.data.prepare"}
    graph = import_graph()
    graph["protoseg.data.ranking"] = imported_modules(fake, known, "protoseg.data.ranking")
    assert find_cycle(graph) is not None


def long_functions(paths: list[str], limit: int = MAX_FUNCTION_LINES) -> list[str]:
    out = []
    for entry in paths:
        base = ROOT / entry
        for path in sorted(base.rglob("*.py")) if base.is_dir() else [base]:
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > limit:
                        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                        out.append(f"{shown}::{node.name} ({lines} lines)")
    return out


@pytest.mark.parametrize("scope", SHORT_FUNCTIONS)
def test_functions_are_short(scope):
    assert long_functions([scope]) == []


def test_the_length_check_can_fail(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "long.py").write_text(f"def f():\n{body}\n")
    assert long_functions([str(tmp_path / "long.py")]) == [f"{tmp_path / 'long.py'}::f ({MAX_FUNCTION_LINES + 1} lines)"]


def test_modules_are_short():
    long = [f"{p.relative_to(ROOT)} ({n} lines)" for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert long == []
