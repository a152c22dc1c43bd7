"""The import graph of the packages, read statically (every `import`, module-level or inside a
function, `TYPE_CHECKING` blocks included): no module imports a higher layer, and no two modules
or packages import each other, directly or round a longer loop.

Layers, lowest first (a module may import its own layer and those below it):
drivers -> postprocessing -> hil_fixtures -> node, and inside node the ranks of NODE_LAYERS.
"""

from __future__ import annotations

import ast
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("drivers", "postprocessing", "hil_fixtures", "node")

# node's subpackages and top modules by rank: a module may import only equal or lower ranks.
NODE_LAYERS: dict[str, int] = {
    # shared services: owner-only files, the config checks, alarms and metrics
    "node.private_files": 0,
    "node.configschema": 0,
    "node.management": 0,
    # authenticated classical messaging; models (ml) over driver and post-processing data
    "node.classical": 1,
    "node.ml": 1,
    # the QKD link protocol and the control plane's data (topology, routing, reservations)
    "node.link": 2,
    "node.control": 2,
    "node.control.sdn.config": 2,  # the [sdn] table's schema, read by the key manager's config
    # the key manager: store, ETSI 014, relay (it asks the control plane for routes)
    "node.keymanager": 3,
    # the SDN agent serves a key manager over RESTCONF
    "node.control.sdn": 4,
    # one node's daemon, its configuration, hardware and demo wiring
    "node.runtime": 5,
    # networks of nodes on loopback and their demos
    "node.network": 6,
    # entry points
    "node.bench": 7,
    "node.commands": 7,
    "node.cli": 7,
    "node.__main__": 7,
    "node": 7,
}
PACKAGE_RANK = {"drivers": 0, "postprocessing": 1, "hil_fixtures": 2, "node": 3}

# ---------------------------------------------------------------------------------------------
# KNOWN EXCEPTIONS: the one place to list edges not yet removed. Each is (importer, imported).
# (None left: the relay, QoS service and SDN loops are gone; the key manager takes host protocols and
# the services that serve it are handed in by whoever starts it.)
KNOWN_EXCEPTIONS: frozenset[tuple[str, str]] = frozenset()
# ---------------------------------------------------------------------------------------------


def _modules() -> dict[str, Path]:
    """Every module of the packages by dotted name (a package by its own name)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The module of ours that `name` (a module or a name inside one) refers to."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _parse(path: Path) -> ast.Module:
    """`path`'s syntax tree. CPython 3.11's parser keeps its recursion-depth check in state shared by
    threads, so a thread left compiling by another test in this worker can make `ast.parse` raise
    SystemError ("AST constructor recursion depth mismatch"); it is parsed again."""
    for _ in range(4):
        try:
            return ast.parse(path.read_text(), str(path))
        except SystemError:
            time.sleep(0.05)
    return ast.parse(path.read_text(), str(path))


def _imports(module: str) -> Iterator[tuple[str, int]]:
    """(imported module, line) for each import statement anywhere in `module`."""
    path = MODULES[module]
    tree = _parse(path)
    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            # `from pkg import mod` imports the submodule; `from mod import name` the module
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            owner = _owner(target)
            if owner is not None and owner != module:
                yield owner, node.lineno


def _graph() -> dict[str, set[str]]:
    return {m: {t for t, _ in _imports(m)} for m in MODULES}


def _rank(module: str) -> tuple[int, int]:
    """(package rank, rank inside node) of a module: the longest NODE_LAYERS prefix decides."""
    top = module.split(".")[0]
    if top != "node":
        return PACKAGE_RANK[top], 0
    name = module
    while name not in NODE_LAYERS:
        name = name.rpartition(".")[0]
    return PACKAGE_RANK[top], NODE_LAYERS[name]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _without_exceptions(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: {t for t in targets if (m, t) not in KNOWN_EXCEPTIONS} for m, targets in graph.items()}


def _package_of(module: str) -> str:
    """node's subpackage (node.link, node.control.sdn, ...) or the top package, for package cycles."""
    parts = module.split(".")
    if parts[0] != "node":
        return parts[0]
    name = module
    while name not in NODE_LAYERS:
        name = name.rpartition(".")[0]
    return name


def test_no_module_imports_a_higher_layer() -> None:
    upward = [
        f"{m}:{line} imports {t}"
        for m in sorted(MODULES)
        for t, line in _imports(m)
        if _rank(t) > _rank(m) and (m, t) not in KNOWN_EXCEPTIONS
    ]
    assert not upward, "imports of a higher layer:\n" + "\n".join(upward)


def test_no_import_cycle_between_modules() -> None:
    cycles = _cycles(_without_exceptions(_graph()))
    assert not cycles, "modules importing each other:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_import_cycle_between_packages() -> None:
    packages: dict[str, set[str]] = {}
    for m, targets in _without_exceptions(_graph()).items():
        packages.setdefault(_package_of(m), set()).update(
            _package_of(t) for t in targets if _package_of(t) != _package_of(m)
        )
    cycles = _cycles(packages)
    assert not cycles, "packages importing each other:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_every_known_exception_is_still_an_edge() -> None:
    """An exception whose import is gone must be deleted, so the list only ever shrinks."""
    graph = _graph()
    stale = sorted(e for e in KNOWN_EXCEPTIONS if e[1] not in graph.get(e[0], set()))
    assert not stale, f"delete these from KNOWN_EXCEPTIONS, the imports are gone: {stale}"


def test_the_walker_sees_function_level_imports_and_ranks_the_layers_in_order() -> None:
    """The checker itself: an import inside a function is an edge, the ranks rise up the stack, a loop is found."""
    assert _owner("postprocessing.slotting.fit_clock") == "postprocessing.slotting"
    edges = {t for t, _ in _imports("node.runtime.loopback")}
    assert "node.runtime.mockmodel" in edges  # imported inside ideal_block_length
    assert _rank("drivers.mock.link") < _rank("postprocessing.receiver") < _rank("node.link.alice")
    assert _rank("node.link.alice") < _rank("node.runtime.daemon") < _rank("node.commands.bench")
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
