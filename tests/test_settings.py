"""The environment variables lipstudy reads: at most five, all read in lipstudy/settings.py, and
the README's table lists exactly them; no module of the package sets one."""
import ast
import re
from pathlib import Path

from lipstudy import settings

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "lipstudy"
PREFIX = "LIPSTUDY" + "_"  # this file's planted examples are spelt so that a grep of the checkout does not find them


def _environment_uses(source: str) -> list[str]:
    """``os.environ`` / ``os.getenv`` / ``os.putenv`` in a module's code (not its docstrings)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "putenv", "unsetenv") \
                and isinstance(node.value, ast.Name) and node.value.id == "os":
            found.append(f"os.{node.attr} (line {node.lineno})")
    return found


def _variables_named(source: str) -> set[str]:
    """The LIPSTUDY_* names a module's code holds as whole strings (not in prose)."""
    return {node.value for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and re.fullmatch(r"LIPSTUDY_[A-Z0-9_]+", node.value)}


def test_the_checks_see_what_they_look_for():
    assert _environment_uses(f"import os\nx = os.environ.get('{PREFIX}X')") == ["os.environ (line 2)"]
    assert _environment_uses("import os\nos.environ['A'] = '1'") == ["os.environ (line 2)"]
    assert _variables_named(f"x = '{PREFIX}PROGRESS'\ny = 'see ${PREFIX}DATA'") == {f"{PREFIX}PROGRESS"}


def test_only_the_settings_module_reads_the_environment_and_it_reads_at_most_five_variables():
    assert len(settings.ENVIRONMENT) <= 5
    assert _variables_named((PACKAGE / "settings.py").read_text()) == set(settings.ENVIRONMENT)
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "settings.py" and path.parent == PACKAGE:
            continue
        source = path.read_text()
        named = _variables_named(source)
        assert not named, f"{path.relative_to(REPO)} names {sorted(named)}: read it through lipstudy.settings"
        if path.relative_to(PACKAGE).parts[0] != "server":  # the server's own process settings are not ours
            uses = _environment_uses(source)
            allowed = {"runtime.py"}  # torchrun's RANK / WORLD_SIZE / LOCAL_RANK
            assert not uses or path.name in allowed, f"{path.relative_to(REPO)}: {uses}"


def test_every_variable_the_repository_mentions_is_a_setting():
    """What the package, benchmarks, chapters, tests and Makefile mention is what settings.py reads."""
    mentioned = set()
    for folder in ("lipstudy", "benchmarks", "book", "tests"):
        for path in (REPO / folder).rglob("*"):
            if path.suffix in (".py", ".md", ".sh", ".yml") and ".ipynb_checkpoints" not in path.parts \
                    and "_build" not in path.parts:
                mentioned |= set(re.findall(r"LIPSTUDY_[A-Z0-9_]+", path.read_text()))
    mentioned |= set(re.findall(r"LIPSTUDY_[A-Z0-9_]+", (REPO / "Makefile").read_text()))
    assert mentioned <= set(settings.ENVIRONMENT), sorted(mentioned - set(settings.ENVIRONMENT))


def test_the_readme_lists_exactly_the_settings():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Settings"):]
    section = section[:section.index("\n## ", 1)]
    rows = re.findall(r"^\| `(LIPSTUDY_[A-Z0-9_]+)` \|", section, re.MULTILINE)
    assert rows == list(settings.ENVIRONMENT)
