"""The server is an optional extra (issue 33): `pip install -e .` gives the study without starlette,
uvicorn, h11 and anyio; `lipstudy serve` then says how to install them instead of a traceback, and the
rest of the package never imports the server (nor the attack kit, which lives with the tests)."""
import ast
import sys
import tomllib
from pathlib import Path

import pytest

from lipstudy import cli
from test_imports import import_graph

ROOT = Path(__file__).resolve().parents[1]


def _server_extra() -> set[str]:
    reqs = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["server"]
    return {r.split("=")[0].split("<")[0].split(">")[0].strip().lower() for r in reqs}


def test_the_router_checks_the_extra_pyproject_declares():
    extra, modules = cli.EXTRAS["serve"]
    assert extra == "server" and set(modules) == _server_extra() == {"starlette", "uvicorn", "h11", "anyio"}
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not {d.lower() for d in deps} & _server_extra()  # no longer core dependencies


@pytest.mark.parametrize("hidden", [["uvicorn"], ["starlette", "uvicorn", "h11", "anyio"]])
def test_serve_without_the_extra_says_how_to_install_it(monkeypatch, capsys, tmp_path, hidden):
    # As if never installed: a None entry makes `import uvicorn` fail and find_spec answer None. The
    # server's own modules are dropped too, so nothing already imported hides the missing ones.
    for name in [m for m in sys.modules if m == "lipstudy.server" or m.startswith("lipstudy.server.")]:
        monkeypatch.delitem(sys.modules, name)
    for name in hidden:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ModuleNotFoundError):
        import uvicorn  # noqa: F401  (the hiding works)
    assert cli.main(["serve", "--data", str(tmp_path), "--db", str(tmp_path / "x.db")]) == 1
    err = capsys.readouterr().err
    assert "pip install -e .[server]" in err and "Traceback" not in err
    assert f"{', '.join(hidden)} {'is' if len(hidden) == 1 else 'are'} not installed" in err
    assert not any(m.startswith("lipstudy.server") for m in sys.modules)  # refused before importing it


def test_the_core_package_never_imports_the_server_or_the_attack_kit():
    graph = import_graph()
    core = {m: deps for m, deps in graph.items() if not (m == "lipstudy.server" or m.startswith("lipstudy.server."))}
    assert "lipstudy.cli" in core and "lipstudy.server.app" in graph
    assert not {m: d for m, d in core.items() if any(x.startswith("lipstudy.server") for x in d)}
    for path in (ROOT / "lipstudy").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any("attacks" in n for n in names), f"{path} imports the attack kit"
    assert not (ROOT / "lipstudy" / "server" / "attacks.py").exists()
