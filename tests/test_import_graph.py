"""The layout reads as the method: no import cycles, and no module imports from a layer
above its own (the layers are declared once, in persona_gen/layers.py).

Every import counts, at module level or inside a function (a lazy import is still a
dependency); imports under `if TYPE_CHECKING:` are left out, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

from persona_gen.layers import LAYERS, layer_of

PACKAGE = Path(__file__).resolve().parents[1] / "persona_gen"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        skip = _type_checking_lines(tree)
        deps: set[str] = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names]
            for target in targets:
                # `from a.b import c` names module a.b.c when that exists, else a.b.
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target.startswith("persona_gen") and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*path[path.index(dep):], dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert len(graph) > 80  # the walk found the package
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a module from a layer above its own."""
    return sorted(f"{mod} imports {dep}" for mod, deps in graph.items()
                  for dep in deps if layer_of(_package(dep)) > layer_of(_package(mod)))


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    assert upward(import_graph()) == []


def test_every_package_has_a_layer_and_the_method_reads_in_order() -> None:
    packages = {_package(m) for m in import_graph()}
    for p in packages:
        layer_of(p)  # raises for a package missing from persona_gen/layers.py
    method = ("census", "personas", "prompts", "plan", "feedback", "bench")
    assert [layer_of(p) for p in method] == sorted(layer_of(p) for p in method)
    assert max(layer_of(p) for p in ("storage", "engines", "pipeline")) < layer_of("census")
    assert layer_of("run") > layer_of("bench") and LAYERS[-1] == ("cli",)


def test_the_layer_check_catches_an_import_running_back_up() -> None:
    graph = {"persona_gen.census.x": {"persona_gen.personas.y", "persona_gen.storage.z"},
             "persona_gen.pipeline.a": {"persona_gen.run.config"},
             "persona_gen.bench.b": {"persona_gen.personas.y"}}
    assert upward(graph) == ["persona_gen.census.x imports persona_gen.personas.y",
                             "persona_gen.pipeline.a imports persona_gen.run.config"]


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
