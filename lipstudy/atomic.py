"""Write-then-rename: the one way lipstudy writes a file that something else may read.

A reader (a chapter, the run cache, the leaderboard) must never see half a file, and an
interrupted writer must leave the previous version intact. Every writer therefore writes to a
temporary name in the same directory (same filesystem, so ``os.replace`` is atomic), flushes it
to disk and renames it over the target.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    Use it for writers that want a filename (``np.savez``, ``torch.save``, ``PIL.Image.save``,
    papermill). ``suffix`` keeps the extension some writers look at (``.png``, ``.npz``). If the
    block raises, the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{suffix}")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb") as f:  # the data must be on disk before the name points at it
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically; return the path."""
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any, **kwargs: Any) -> Path:
    """``json.dumps(obj, indent=1, **kwargs)`` written atomically."""
    kwargs.setdefault("indent", 1)
    return atomic_write(path, json.dumps(obj, **kwargs))


def atomic_save(path: str | os.PathLike, save: Callable[[Path], Any], suffix: str = "") -> Path:
    """Call ``save(tmp_path)`` and rename the result to ``path`` (e.g. ``lambda p: torch.save(obj, p)``)."""
    with atomic_path(path, suffix=suffix) as tmp:
        save(tmp)
    return Path(path)
