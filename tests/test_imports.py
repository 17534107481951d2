"""The house: imports flow one way (infra/__main__.py -> infra.program -> components; infra.tooling beside
the program, importing it, never imported by it), with no import circle between our modules.

Read from the source with `ast`, so a lazy import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("components", "infra", "policies")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _our_modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


MODULES = _our_modules()


def _imports(path: Path) -> set[str]:
    """Our modules that `path` imports, wherever in the file the import statement is."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found |= {name for name in names if name in MODULES}
    return found


GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def test_the_import_walk_sees_the_program_wiring() -> None:
    # Guards the test itself: if the walk found nothing, every check below would pass vacuously.
    assert "infra.program.platform" in GRAPH["infra.__main__"]
    assert "components.serving" in GRAPH["infra.program.platform"]
    assert "infra.program.stack_config" in GRAPH["infra.tooling.mock_engine"]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("components")))
def test_components_never_import_the_program_or_tooling(module: str) -> None:
    upward = sorted(name for name in GRAPH[module] if name.startswith("infra"))
    assert not upward, f"{module} imports {upward}: components must not know the program above them"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith(("infra.program", "infra.__main__"))))
def test_the_program_never_imports_tooling(module: str) -> None:
    tooling = sorted(name for name in GRAPH[module] if name.startswith("infra.tooling"))
    assert not tooling, f"{module} imports {tooling}: the program must run without its tooling"


def test_no_import_circles() -> None:
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for imported in sorted(GRAPH[module]):
            if state.get(imported) == 1:
                circles.append(path[path.index(imported) :] + [imported])
            elif imported not in state:
                visit(imported, path + [imported])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)
