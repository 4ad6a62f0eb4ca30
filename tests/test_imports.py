"""The package's import graph flows one way (DESIGN.md): no module imports, directly or through
others, a module that imports it back. Walks every module's import statements (top-level and
inside functions), resolving relative imports."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lipstudy"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")
                    up = up[:len(up) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                # the module itself, or the package whose attribute was imported
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name and t.startswith("lipstudy"):
                    deps.add(t)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as a list of names (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_in_lipstudy():
    graph = import_graph()
    assert "lipstudy.store" in graph and "lipstudy.runs" in graph["lipstudy.store"]  # the walk sees imports
    # A package's __init__ importing its own modules is not a cycle of concepts: leave packages out.
    packages = {n for n in graph if (PACKAGE.parent / n.replace(".", "/") / "__init__.py").is_file()}
    graph = {n: {m for m in deps if m not in packages} for n, deps in graph.items() if n not in packages}
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_progress_imports_nothing_above_it():
    """The progress lines are a leaf: the trainer and the runner import them, never the other way."""
    assert import_graph()["lipstudy.progress"] == set()
