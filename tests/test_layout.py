"""The package's layout is its architecture: stages in layers, imports only downwards, no cycles.

Reads every module's imports (module-level and inside functions) with ``ast``; the graph it draws
is what ``python tests/test_layout.py`` prints (the house drawn by its imports).
"""

from __future__ import annotations

import ast
import os
import sys
from collections import defaultdict

PACKAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "container", "costaware")

# lowest first: a module may import its own stage and the stages below it, never one above
LAYERS = [
    ("ground", {"errors", "machine", "storage", "config_files", "cluster", "lean_imports",
                "data_capture", ""}),
    ("decisions", {"decisions"}),
    ("metrics", {"metrics"}),
    ("config", {"config"}),
    ("data", {"data"}),
    ("model", {"model"}),
    ("report", {"report"}),
    ("training", {"training"}),
    ("serving", {"serving"}),
    ("monitoring", {"monitoring"}),
    ("comparison", {"comparison"}),
    ("tuning", {"tuning"}),
    ("sagemaker", {"sagemaker"}),
    ("cli", {"cli"}),
]


def stage_of(module: str) -> int:
    head = module.split(".")[0]
    for rank, (_, members) in enumerate(LAYERS):
        if head in members:
            return rank
    raise AssertionError(f"costaware.{module}: in no stage of tests/test_layout.py's LAYERS")


def modules() -> dict[str, str]:
    """costaware-relative dotted name ('' for the package) -> file."""
    found = {}
    for root, _, names in os.walk(PACKAGE):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                rel = os.path.relpath(path, PACKAGE)[:-3].replace(os.sep, ".")
                rel = rel.removesuffix("__init__").rstrip(".")
                found[rel] = path
    return found


def imports(name: str, path: str, known: set[str]) -> set[str]:
    """The costaware modules ``name`` imports (a package's ``from . import m`` counts as m)."""
    is_package = path.endswith("__init__.py")
    package = name if is_package else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                base_parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                base = ".".join(base_parts + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "costaware":
                base = node.module.partition(".")[2]
            else:
                continue
            for alias in node.names:
                child = f"{base}.{alias.name}" if base else alias.name
                out.add(child if child in known else base)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "costaware":
                    out.add(alias.name.partition(".")[2])
    out.discard(name)
    return {m for m in out if m in known}


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_module_imports_a_stage_above_its_own():
    upward = [f"costaware.{a} ({LAYERS[stage_of(a)][0]}) imports costaware.{b} "
              f"({LAYERS[stage_of(b)][0]})"
              for a, targets in graph().items() for b in targets
              if b and stage_of(b) > stage_of(a)]
    assert upward == []


def test_no_import_cycles():
    edges = {a: {b for b in targets if b} for a, targets in graph().items()}
    # the package's own __init__ holds only the version: importing it is not a cycle
    assert cycles(edges) == []


def test_every_module_is_in_a_stage_and_the_package_has_no_flat_stage_modules_left():
    found = modules()
    for name in found:
        stage_of(name)  # raises for a module in no stage
    flat = sorted(n for n in found if n and "." not in n and not os.path.isdir(
        os.path.join(PACKAGE, n)))
    assert flat == ["cli", "cluster", "config_files", "data_capture", "errors", "lean_imports",
                    "machine", "storage"]


def draw() -> str:
    """Stage -> stages it imports, with module counts and lines of code."""
    found, edges = modules(), graph()
    by_stage = defaultdict(list)
    for name in found:
        by_stage[stage_of(name)].append(name)
    lines = []
    for rank, (stage, _) in enumerate(LAYERS):
        names = by_stage.get(rank, [])
        loc = sum(len(open(found[n], encoding="utf-8").readlines()) for n in names)
        below = sorted({LAYERS[stage_of(b)][0] for n in names for b in edges[n]
                        if stage_of(b) != rank})
        lines.append(f"{stage:<10} {len(names):>3} modules {loc:>6} lines  -> "
                     + (", ".join(below) or "-"))
    return "\n".join(lines)


if __name__ == "__main__":
    print(draw())
    problems = cycles({a: {b for b in t if b} for a, t in graph().items()})
    print("cycles:", problems or "none")
