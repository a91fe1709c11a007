"""The package's import graph, read from the source (AST, nothing imported): the realtime
core imports no domain module, nothing imports upward, and there are no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import roomserver

ROOT = Path(roomserver.__file__).parent
CORE_FORBIDDEN = ("roomserver.identity", "roomserver.gating", "roomserver.library",
                  "roomserver.nft", "roomserver.tutor", "roomserver.api", "roomserver.rooms",
                  "roomserver.focus",
                  "roomserver.state", "roomserver.app")
LEAVES = ("roomserver.config", "roomserver.errors", "roomserver.protocol", "roomserver.observe.metrics",
          "roomserver.observe.logs")


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in ROOT.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """Every roomserver module `path` imports, at any depth of the file (lazy ones too);
    `from pkg import sub` counts as importing `pkg.sub`, not `pkg`."""
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            subs = {f"{base}.{alias.name}" for alias in node.names}
            found |= subs & MODULES.keys()
            if not subs <= MODULES.keys():
                found.add(base)
    return {name for name in found if name in MODULES and name != _module(path)}


def _graph() -> dict[str, set[str]]:
    return {name: _imports(path) for name, path in MODULES.items()}


def test_the_realtime_core_imports_no_domain_module() -> None:
    core = sorted((ROOT / "realtime").glob("*.py"))
    assert len(core) >= 8  # node, frames, hub, broker, presence, history, recorder, trace
    offenders = {_module(p): sorted(m for m in _imports(p) if m.startswith(CORE_FORBIDDEN))
                 for p in core}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_leaves_import_nothing_of_ours_and_nothing_imports_the_edge_or_the_app() -> None:
    graph = _graph()
    for leaf in LEAVES:
        assert graph[leaf] <= set(LEAVES), (leaf, graph[leaf])
    for name, deps in graph.items():
        if not name.startswith(("roomserver.api", "roomserver.app", "roomserver.__main__")):
            assert not {d for d in deps if d.startswith(("roomserver.api", "roomserver.app"))}, name


def test_the_import_graph_is_acyclic() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path, name, dep]))
            if dep not in state:
                visit(dep, [*path, name])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert len(state) == len(graph) > 40
