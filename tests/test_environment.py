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
    """The core dependencies and every optional extra's (the server's, the tests'): `make` installs the
    whole lock, so an extra is installed at its exact pin too."""
    names = declared_dependencies() | set().union(*optional_dependencies().values())
    assert {"torch", "starlette", "uvicorn", "pytest"} <= names
    env = {_normalise(n): v for n, v in _pins((ROOT / "environment.yml").read_text().splitlines()).items()}
    lock = {_normalise(n): v for n, v in _pins((ROOT / "requirements.lock").read_text().splitlines()).items()}
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


def _project() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _names(requirements: list[str]) -> set[str]:
    return {_normalise(re.match(r"[A-Za-z0-9_.\-]+", d).group(0)) for d in requirements}


def declared_dependencies() -> set[str]:
    return _names(_project()["dependencies"])


def optional_dependencies() -> dict[str, set[str]]:
    """{extra: distributions} of pyproject's optional dependencies."""
    return {extra: _names(reqs) for extra, reqs in _project()["optional-dependencies"].items()}


# Package folders that may import an optional extra's distributions as well as the core ones.
EXTRA_OF_FOLDER = {"lipstudy/server/": "server"}


def undeclared(imports: dict[str, set[str]], declared: set[str]) -> list[str]:
    return sorted(f"{m} (distribution {distribution_of(m)}; imported by {', '.join(sorted(files))})"
                  for m, files in imports.items() if _normalise(distribution_of(m)) not in declared)


def test_imported_modules_are_declared_dependencies():
    """The core package and the chapters import only `dependencies`; lipstudy/server/ may also import
    the `server` extra's (issue 33: `pip install -e .` without it still gives a working study)."""
    imports = third_party_imports()
    # The scan sees what it must: lazy imports inside functions, and the chapters' imports.
    assert {"torch", "PIL", "scipy", "nbformat", "IPython", "myst_nb", "starlette", "uvicorn"} <= set(imports)
    assert "lipstudy/data/synth/scene.py" in imports["scipy"] and "book/intro.md" in imports["myst_nb"]
    assert not {"os", "json", "lipstudy", "__future__"} & set(imports)
    extras = optional_dependencies()
    for folder, extra in [(None, None), *EXTRA_OF_FOLDER.items()]:
        if folder is None:  # the core: every file outside the folders of an extra
            part = {m: {f for f in files if not f.startswith(tuple(EXTRA_OF_FOLDER))} for m, files in imports.items()}
            declared = declared_dependencies()
        else:
            part = {m: {f for f in files if f.startswith(folder)} for m, files in imports.items()}
            declared = declared_dependencies() | extras[extra]
        missing = undeclared({m: files for m, files in part.items() if files}, declared)
        where = "dependencies" + (f" or the {extra!r} extra" if extra else "")
        assert not missing, f"imported but not in pyproject.toml {where}: " + "; ".join(missing)


def test_undeclared_import_is_reported():
    declared = declared_dependencies()
    assert {"scipy", "pillow", "scikit-image", "ipython", "myst-nb", "nbformat"} <= declared
    imports = {"scipy": {"lipstudy/data/synth/scene.py"}, "PIL": {"lipstudy/parse.py"}, "myst_nb": {"book/claims.md"}}
    assert undeclared(imports, declared) == []
    assert undeclared(imports, declared - {"scipy", "myst-nb"}) == [
        "myst_nb (distribution myst-nb; imported by book/claims.md)",
        "scipy (distribution scipy; imported by lipstudy/data/synth/scene.py)"]
    assert distribution_of("skimage") == "scikit-image" and distribution_of("IPython") == "ipython"
