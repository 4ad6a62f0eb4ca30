"""The package's import graph flows one way (DESIGN.md): every module belongs to one step of the
data flow (:data:`LAYERS`, the order of DESIGN.md's table) and imports only modules of its own
step or of an earlier one, and no module imports, directly or through others, a module that
imports it back. Walks every module's import statements (top-level and inside functions),
resolving relative imports."""
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


LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("files, settings, labels, the paper, the profiles",
     ("atomic", "locks", "settings", "paths", "progress", "words", "labels", "paper", "profiles")),
    ("data", ("data",)),
    ("augmentation and batches", ("transforms", "batches", "resident")),
    ("networks", ("models",)),
    ("joints, losses, confusion matrices", ("joints", "losses", "metrics")),
    ("one stage's settings, where it runs, checkpoints", ("config", "runtime", "checkpoints")),
    ("trainer", ("train",)),
    ("evaluator", ("evaluate", "parse", "figures")),
    ("scores and records", ("subsets", "tables", "provenance")),
    ("the run graph and the run store", ("runs", "store", "showcase", "scale_attention")),
    ("making runs: training, committed runs, bundles",
     ("train_run", "process_pool", "committed", "bundles", "bundle_reader", "export", "reference")),
    ("analyses", ("loss_modes", "deviations", "measurements", "budget", "claims", "compare", "ssl_effect", "swaps", "annotation_examples")),
    ("commands and the book", ("dryrun", "runs_cli", "book", "cli")),
    ("the evaluation server", ("server",)),
]
"""DESIGN.md's steps in order, each with the modules (or packages) of the package in it."""


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of a module (``lipstudy.data.roots`` is in "data")."""
    parts = module.split(".")[1:]
    found = [i for i, (_, names) in enumerate(LAYERS) for name in names
             if parts[:len(name.split("."))] == name.split(".")]
    if len(found) != 1:
        raise KeyError(f"{module} is in {len(found)} layers of LAYERS (it must be in exactly one)")
    return found[0]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``"a (step) imports b (later step)"`` for every import against the order of :data:`LAYERS`
    (the top-level ``lipstudy`` package, imported by ``from . import x``, is no step)."""
    out = []
    for module, deps in sorted(graph.items()):
        if module == "lipstudy":
            continue
        for dep in sorted(deps):
            if dep != "lipstudy" and layer_of(dep) > layer_of(module):
                out.append(f"{module} ({LAYERS[layer_of(module)][0]}) imports {dep} ({LAYERS[layer_of(dep)][0]})")
    return out


def test_the_layering_check_finds_an_upward_import():
    assert layer_of("lipstudy.data.roots") == 1 and layer_of("lipstudy.store") > layer_of("lipstudy.train")
    assert upward_imports({"lipstudy.data.roots": {"lipstudy.runs"}}) == [
        "lipstudy.data.roots (data) imports lipstudy.runs (the run graph and the run store)"]
    assert upward_imports({"lipstudy.runs": {"lipstudy.data.roots"}}) == []


def test_every_module_has_a_step_and_imports_none_of_a_later_one():
    graph = import_graph()
    for module in graph:
        if module != "lipstudy":
            layer_of(module)  # raises for a module in no step, or in two
    assert upward_imports(graph) == []


def test_progress_imports_nothing_above_it():
    """The progress lines are a leaf: the trainer and the runner import them, never the other way."""
    assert import_graph()["lipstudy.progress"] == set()


def test_words_imports_nothing_of_the_package():
    """The sentences' counts and lists are a leaf: claims, tables and chapters import them."""
    assert import_graph()["lipstudy.words"] == set()
