"""The layout rules of docs/architecture.md, read from the source: no import cycle, few top-level modules,
public names imported by their public path, rooms that follow the data flow."""

from __future__ import annotations

import ast
import functools
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "robust_hpo"

# The import order of the rooms: a room may import only rooms to its left (and the shared modules).
# It is the data flow, except that analysis and plots know nothing of study files (study uses plots).
FLOW = ("datasets", "attacks", "slope", "learners", "objective", "analysis", "plots", "study", "dashboard", "cli")
SHARED = ("errors", "_validation", "_files", "search_space", "testing")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """The longest prefix of a dotted name that is a robust_hpo module."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    raise AssertionError(f"import of {name!r} resolves to no robust_hpo module")


@functools.cache
def _imports() -> dict[str, set[str]]:
    """module -> every robust_hpo module it imports (top-level and inside functions)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{name}: relative import; use the absolute robust_hpo path"
                base = node.module or ""
                targets = [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                if target == "robust_hpo" or target.startswith("robust_hpo."):
                    resolved = _resolve(target, modules)
                    if resolved != name:
                        graph[name].add(resolved)
    return graph


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "robust_hpo"


def test_no_import_cycle_among_modules() -> None:
    graph = _imports()
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_at_most_six_top_level_modules() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 6, top


def test_rooms_follow_the_data_flow() -> None:
    """A room imports only rooms before it in FLOW and the shared modules; the package root (the public
    API) is imported only for ``__version__`` by the study runner and the CLI."""
    rooms = {_room(m) for m in _modules()}
    assert rooms == {*FLOW, *SHARED, "robust_hpo"}, sorted(rooms ^ {*FLOW, *SHARED, "robust_hpo"})
    wrong = []
    for module, targets in _imports().items():
        room = _room(module)
        for target in targets:
            other = _room(target)
            if other == room or other in SHARED:
                continue
            if other == "robust_hpo":
                allowed = room in ("study", "cli")
            elif room == "robust_hpo":
                allowed = True
            elif room in SHARED:
                allowed = room == "testing" and other in FLOW[:5]
            else:
                allowed = FLOW.index(other) < FLOW.index(room)
            if not allowed:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_public_names_come_by_their_public_path() -> None:
    """A private module (``_name``) is imported only from inside its own package."""
    wrong = []
    modules = _modules()
    for module, targets in _imports().items():
        package = module if modules[module].name == "__init__.py" else module.rpartition(".")[0]
        for target in targets:
            parent, _, last = target.rpartition(".")
            if last.startswith("_") and not (package == parent or package.startswith(parent + ".")):
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_learner_families_do_not_register_on_import() -> None:
    """Families are found through the static table in robust_hpo.learners, never by import side effects."""
    for path in (PACKAGE / "learners").glob("*.py"):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "register_family"]
        assert not calls, f"{path.name} calls register_family"
