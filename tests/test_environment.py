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
