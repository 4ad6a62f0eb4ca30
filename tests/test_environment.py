"""The pinned environment: requirements.lock (what `make` installs), environment.yml and pyproject agree."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines):
    out = {}
    for line in lines:
        m = re.match(r"^\s*(?:-\s+)?([A-Za-z0-9_.\-]+)==([^\s#]+)", line)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def test_environment_yml_pins_equal_the_lock():
    lock = _pins((ROOT / "requirements.lock").read_text().splitlines())
    env = _pins((ROOT / "environment.yml").read_text().splitlines())
    assert env, "environment.yml lists no pins"
    for name, version in env.items():
        assert lock.get(name) == version, f"{name}: environment.yml {version} vs requirements.lock {lock.get(name)}"


def test_every_lock_line_is_exact_and_key_pins_hold():
    lines = [l for l in (ROOT / "requirements.lock").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert all("==" in l for l in lines), [l for l in lines if "==" not in l]
    lock = _pins(lines)
    assert lock["torch"] == "2.13.0"
    major = int(lock["jupyter-book"].split(".")[0])
    assert major == 1, "jupyter-book 2.x ignores _config.yml"


def test_pyproject_dependencies_are_all_pinned():
    text = (ROOT / "pyproject.toml").read_text()
    deps = re.search(r"dependencies = \[(.*?)\]", text, re.S).group(1)
    names = [re.match(r"[A-Za-z0-9_.\-]+", d.strip().strip('",')).group(0).lower()
             for d in deps.split("\n") if d.strip().strip('",')]
    env = _pins((ROOT / "environment.yml").read_text().splitlines())
    lock = _pins((ROOT / "requirements.lock").read_text().splitlines())
    for n in names:
        assert n in lock and n in env, f"{n} is a dependency but not pinned in both files"


# ---------------------------------------------------------------------------------------------
# Every third-party module the package (or a chapter) imports is a declared dependency.

# Import names whose distribution is named otherwise.
DISTRIBUTION_OF = {"PIL": "pillow", "skimage": "scikit-image", "yaml": "pyyaml", "IPython": "ipython",
                   "myst_nb": "myst-nb", "sklearn": "scikit-learn", "cv2": "opencv-python",
                   "jupyter_book": "jupyter-book"}


def _normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them (case and -_. runs folded)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _modules_imported(source: str) -> set[str]:
    """Top-level names of the modules ``source`` imports, anywhere (lazy imports included)."""
    import ast

    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def _chapter_code(md_text: str) -> str:
    """The code cells of a MyST notebook (cell options and IPython magics dropped)."""
    cells = re.findall(r"^```\{code-cell\}[^\n]*\n(.*?)^```", md_text, re.S | re.M)
    lines = [l for cell in cells for l in cell.splitlines() if not l.startswith((":", "%", "!"))]
    return "\n".join(lines)


def third_party_imports() -> dict[str, set[str]]:
    """{module: files importing it} for lipstudy/**.py and the book's chapters, stdlib and
    lipstudy itself left out."""
    import sys

    sources = {p: p.read_text() for p in sorted((ROOT / "lipstudy").rglob("*.py"))}
    sources.update({p: _chapter_code(p.read_text()) for p in sorted((ROOT / "book").glob("*.md"))})
    found: dict[str, set[str]] = {}
    for path, text in sources.items():
        for m in _modules_imported(text):
            if m not in sys.stdlib_module_names and m not in ("lipstudy", "__future__"):
                found.setdefault(m, set()).add(str(path.relative_to(ROOT)))
    return found


def distribution_of(module: str) -> str:
    from importlib.metadata import packages_distributions

    if module in DISTRIBUTION_OF:
        return DISTRIBUTION_OF[module]
    dists = packages_distributions().get(module)
    return _normalise(dists[0]) if dists else _normalise(module)


def declared_dependencies() -> set[str]:
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {_normalise(re.match(r"[A-Za-z0-9_.\-]+", d).group(0)) for d in deps}


def undeclared(imports: dict[str, set[str]], declared: set[str]) -> list[str]:
    return sorted(f"{m} (distribution {distribution_of(m)}; imported by {', '.join(sorted(files))})"
                  for m, files in imports.items() if _normalise(distribution_of(m)) not in declared)


def test_imported_modules_are_declared_dependencies():
    imports = third_party_imports()
    # The scan sees what it must: lazy imports inside functions, and the chapters' imports.
    assert {"torch", "PIL", "scipy", "nbformat", "IPython", "myst_nb"} <= set(imports)
    assert "lipstudy/data/synth/scene.py" in imports["scipy"] and "book/intro.md" in imports["myst_nb"]
    assert not {"os", "json", "lipstudy", "__future__"} & set(imports)
    missing = undeclared(imports, declared_dependencies())
    assert not missing, "imported but not in pyproject.toml dependencies: " + "; ".join(missing)


def test_undeclared_import_is_reported():
    declared = declared_dependencies()
    assert {"scipy", "pillow", "scikit-image", "ipython", "myst-nb", "nbformat"} <= declared
    imports = {"scipy": {"lipstudy/data/synth/scene.py"}, "PIL": {"lipstudy/parse.py"}, "myst_nb": {"book/claims.md"}}
    assert undeclared(imports, declared) == []
    assert undeclared(imports, declared - {"scipy", "myst-nb"}) == [
        "myst_nb (distribution myst-nb; imported by book/claims.md)",
        "scipy (distribution scipy; imported by lipstudy/data/synth/scene.py)"]
    assert distribution_of("skimage") == "scikit-image" and distribution_of("IPython") == "ipython"
