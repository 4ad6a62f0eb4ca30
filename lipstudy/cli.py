"""The ``lipstudy`` command. Each sub-command lives in the module of the concept it serves and
exposes ``main(argv)``; this file only routes, importing lazily so ``lipstudy --help`` is fast."""
from __future__ import annotations

import importlib
import importlib.util
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("lipstudy.data.synth.dataset:main", "render the synthetic benchmark in LIP layout"),
    "check-data": ("lipstudy.data.check:check_main", "validate a LIP / ATR / PPP dataset directory"),
    "train": ("lipstudy.train:main", "train a model (one stage) from a config"),
    "evaluate": ("lipstudy.evaluate:main", "evaluate a checkpoint on a split"),
    "runs": ("lipstudy.runs_cli:runs_main", "list runs; prepare, train, export (bundle), import and commit a profile's runs"),
    "budget": ("lipstudy.budget:main", "write a profile's mean IoU vs training compute (results/budget/)"),
    "parse": ("lipstudy.parse:main", "parse your own photos with a checkpoint"),
    "book": ("lipstudy.book.runner:main", "execute the book's chapters with papermill"),
    "serve": ("lipstudy.server:main", "the evaluation server: hidden test labels, team tokens, leaderboard"),
}

# Commands that need an optional extra of pyproject.toml: {command: (extra, the modules it provides)}.
# Checked before the command's module is imported, so a missing one is a sentence, not a traceback.
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "serve": ("server", ("starlette", "uvicorn", "h11", "anyio")),
}


def _usage() -> str:
    lines = ["usage: lipstudy COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<11} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`lipstudy COMMAND --help` describes one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"lipstudy: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    missing = _missing_extra(name)
    if missing:
        extra = EXTRAS[name][0]
        print(f"lipstudy {name}: needs the optional '{extra}' dependencies, and {', '.join(missing)} "
              f"{'is' if len(missing) == 1 else 'are'} not installed. From the checkout: "
              f"pip install -e .[{extra}] (`make venv` installs every pinned dependency)", file=sys.stderr)
        return 1
    module, func = COMMANDS[name][0].split(":")
    return int(getattr(importlib.import_module(module), func)(rest) or 0)


def _missing_extra(name: str) -> list[str]:
    """The modules of ``name``'s optional extra that cannot be imported ([] if it needs none)."""
    return [m for m in EXTRAS.get(name, ("", ()))[1] if importlib.util.find_spec(m) is None]


if __name__ == "__main__":
    sys.exit(main())
