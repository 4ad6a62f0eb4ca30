"""What the book shows of an executed chapter notebook, and the checks its pages must pass.

papermill executes a chapter by inserting an ``injected-parameters`` cell after the chapter's own
``parameters`` cell; shown as is, a page would list its parameters twice, the second block
overriding the first. :func:`page_notebook` keeps one block: the chapter's own cell (with its
comments) rewritten to the values papermill injected, the injected cell hidden (``remove-cell``)
but kept in the notebook. :func:`stray_reprs` finds what a chapter must not print: the repr of a
matplotlib object returned by a cell's last statement (``Text(...)``, ``<Figure ...>``,
``<Axes: ...>``); end such statements with ``;`` or assign them.
"""
from __future__ import annotations

import ast
import copy
import re
from pathlib import Path

INJECTED = "injected-parameters"

STRAY_REPR = re.compile(r"^\s*\[?(Text\(|<Figure size|<Axes[:\s]|Axes\(|<matplotlib\.|Line2D\(|"
                        r"<Container object|<BarContainer|Legend\(|<seaborn\.)", re.MULTILINE)
"""The text of an output that is a plotting object's repr, not a result meant for the reader."""


def _tags(cell) -> list:
    return cell.get("metadata", {}).get("tags", [])


def _assignments(source: str) -> dict[str, tuple[int, str]] | None:
    """``name -> (line index, value source)`` of the one-line ``name = value`` statements of a
    cell, or None when the cell holds anything else (then it is not rewritten)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    out = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.lineno == node.end_lineno):
            return None
        out[node.targets[0].id] = (node.lineno - 1, ast.get_source_segment(source, node.value))
    return out


def merge_parameters(own: str, injected: str) -> str | None:
    """The chapter's parameters cell ``own`` with each value replaced by the one papermill
    ``injected`` (comments kept, aligned), or None when either cell is not a list of one-line
    assignments or the injected cell sets a name the chapter does not declare."""
    mine, used = _assignments(own), _assignments(injected)
    if mine is None or used is None or not set(used) <= set(mine):
        return None
    lines = own.splitlines()
    code, comments = {}, {}
    for name, (i, _) in mine.items():
        m = re.match(r"^[^#]*?(\s*#.*)?$", lines[i])
        comments[i] = m.group(1).strip() if m and m.group(1) else ""
        code[i] = f"{name} = {used[name][1] if name in used else mine[name][1]}"
    width = max(len(c) for c in code.values()) + 3
    for i, c in code.items():
        lines[i] = c.ljust(width) + comments[i] if comments[i] else c
    return "\n".join(["# Parameters: the values this page was executed with"] + lines)


def page_notebook(nb):
    """A copy of an executed chapter with one parameters block (see the module docstring). When
    the cells cannot be merged, the chapter's own cell is hidden and the injected one shown."""
    nb = copy.deepcopy(nb)
    own = next((c for c in nb.cells if "parameters" in _tags(c)), None)
    injected = next((c for c in nb.cells if INJECTED in _tags(c)), None)
    if own is None or injected is None:
        return nb
    merged = merge_parameters(own.source, injected.source)
    if merged is None:
        own.metadata["tags"] = _tags(own) + ["remove-cell"]
    else:
        own.source = merged
        injected.metadata["tags"] = _tags(injected) + ["remove-cell"]
    return nb


def stray_reprs(nb) -> list[str]:
    """``'code cell N: Text(0.5, 1.01, ...)'`` for every output that shows a plotting object's repr."""
    found = []
    code_cells = [c for c in nb.cells if c.cell_type == "code" and INJECTED not in _tags(c)]
    for number, cell in enumerate(code_cells, 1):
        for out in cell.get("outputs", []):
            if out.get("output_type") not in ("execute_result", "display_data"):
                continue
            text = out.get("data", {}).get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else text
            if len(out.get("data", {})) == 1 and STRAY_REPR.search(text):
                found.append(f"code cell {number}: {text.strip()[:80]}")
    return found


_TOC_ENTRY = re.compile(r"^\s*(?:-\s+)?(root|file):\s*['\"]?([^'\"#\s]+)", re.MULTILINE)
"""A ``root:`` or ``file:`` entry of a Jupyter Book ``_toc.yml`` (read without a YAML parser: the
entries are one ``key: path`` a line)."""


def _toc_entries(book_dir: Path) -> list[tuple[str, str]]:
    return _TOC_ENTRY.findall((Path(book_dir) / "_toc.yml").read_text())


def _chapter_name(file: str) -> str | None:
    return file.removeprefix("_executed/").removesuffix(".ipynb") if file.startswith("_executed/") else None


def toc_chapters(book_dir: Path) -> list[str]:
    """The executed chapters a book's ``_toc.yml`` lists (``_executed/<name>``), in its order."""
    return list(dict.fromkeys(n for _, f in _toc_entries(book_dir) if (n := _chapter_name(f))))


def execution_order(book_dir: Path) -> list[str]:
    """:func:`toc_chapters` in the order they execute: the root page (the front page, which
    summarises the others) last."""
    roots = [_chapter_name(f) for k, f in _toc_entries(book_dir) if k == "root"]
    names = toc_chapters(book_dir)
    return [n for n in names if n not in roots] + [n for n in names if n in roots]
