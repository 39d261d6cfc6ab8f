"""The package layout: each folder imports only from folders below it, and nothing imports in a
cycle (imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "sac"
#: the stage packages, lowest first; a package may import from itself and those before it
LAYERS = ("core", "modeling", "sam", "model", "pipeline", "data", "outputs", "metrics",
          "slides", "batch", "training", "gui", "cli")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every ``sac...`` module ``path`` imports, anywhere in the file."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "sac"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "sac":
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names
                    if (SRC.parent / f"{node.module}.{a.name}".replace(".", "/")).is_dir()
                    or (SRC.parent / (f"{node.module}.{a.name}".replace(".", "/") + ".py"))
                    .is_file()}
    return out


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else None


def test_every_module_belongs_to_a_stage_package() -> None:
    loose = [m for m in MODULES if m.count(".") == 1 and m.split(".")[1] not in LAYERS
             and m not in ("sac.__main__",)]
    assert loose == [], f"modules outside the stage packages: {loose}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _package(m)))
def test_imports_point_down(module: str) -> None:
    rank = LAYERS.index(_package(module))  # type: ignore[arg-type]
    up = sorted(i for i in _imports(MODULES[module])
                if _package(i) is not None and LAYERS.index(_package(i)) > rank)  # type: ignore[arg-type]
    assert up == [], f"{module} imports from higher layers: {up}"


def test_modeling_is_pure() -> None:
    """The networks import nothing from SAC but each other."""
    for module, path in MODULES.items():
        if _package(module) == "modeling":
            assert {i for i in _imports(path) if _package(i) != "modeling"} == set(), module


def test_no_import_cycles() -> None:
    graph = {m: {i for i in _imports(p) if i in MODULES and i != m} for m, p in MODULES.items()}
    # a package's __init__ re-exports its modules; importing a module of the package from
    # inside it is not a cycle through the __init__
    for m in graph:
        graph[m] = {i for i in graph[m] if not (MODULES[i].name == "__init__.py"
                                                and m.startswith(i + "."))}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = [*stack[stack.index(n):], n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
