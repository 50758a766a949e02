"""The package's import graph: no module imports one that imports it back, also through function-local imports."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

PACKAGE = Path(__file__).resolve().parents[1] / "espnet_peft"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> Dict[str, Set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: Dict[str, Set[str]] = {}
    for name, path in modules.items():
        targets: Set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # ``from package import submodule`` depends on the submodule, not on the package's other contents
                candidates = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules
                              else node.module for alias in node.names]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            targets.update(c for c in candidates if c in modules and c != name)
        graph[name] = targets
    return graph


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_cycles() -> None:
    assert not cycles(import_graph())


def test_budget_and_injection_share_target_matching_without_importing_each_other() -> None:
    graph = import_graph()
    assert "espnet_peft.targets" in graph["espnet_peft.budget"]
    assert "espnet_peft.targets" in graph["espnet_peft.injection"]
    assert "espnet_peft.injection" not in graph["espnet_peft.budget"]
    assert not graph["espnet_peft.targets"] - {"espnet_peft.tuners"}


def test_adapters_do_not_import_the_layers_above_them() -> None:
    graph = import_graph()
    above = ("espnet_peft.recipe", "espnet_peft.analysis", "espnet_peft.bin", "espnet_peft.tasks",
             "espnet_peft.train", "espnet_peft.injection", "espnet_peft.budget")
    for module, targets in graph.items():
        if module.startswith("espnet_peft.tuners"):
            assert not [t for t in targets if t.startswith(above)], module


def test_recipe_and_analysis_do_not_import_each_other_and_utils_imports_neither() -> None:
    graph = import_graph()

    def imports(package: str, other: str) -> List[str]:
        return sorted(f"{m} -> {t}" for m, targets in graph.items() if m.startswith(package)
                      for t in targets if t.startswith(other))

    assert not imports("espnet_peft.recipe", "espnet_peft.analysis")
    assert not imports("espnet_peft.analysis", "espnet_peft.recipe")
    assert not imports("espnet_peft.utils", "espnet_peft.recipe") + imports("espnet_peft.utils", "espnet_peft.analysis")
