"""Write-then-rename: the one way lipstudy writes a file that something else may read.

A reader (a chapter, the run store, the leaderboard) must never see half a file, and an
interrupted writer must leave the previous version intact. Every writer therefore writes to a
temporary name in the same directory (same filesystem, so ``os.replace`` is atomic), flushes it
to disk and renames it over the target.

A writer killed outright (SIGKILL, power loss) cannot remove its temporary file. The name
carries the writer's process id, so the first write a process makes into a directory removes the
temporary files there of writers that are no longer running (once per directory and process: a
folder of 10,000 predictions is listed once, not once per file).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
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
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=f".tmp{suffix}")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb") as f:  # the data must be on disk before the name points at it
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


_TEMPORARY = re.compile(r"\..+\.(\d+)-\w+\.tmp")
_swept: set[str] = set()


def _remove_stale_temporaries(path: Path) -> None:
    """Delete ``.<name>.<pid>-<random>.tmp*`` files in ``path``'s folder whose writer is gone."""
    folder = str(path.parent.resolve())
    if folder in _swept:
        return
    _swept.add(folder)
    with os.scandir(folder) as entries:
        for entry in entries:
            m = _TEMPORARY.match(entry.name)
            if m and entry.is_file(follow_symlinks=False) and not _process_alive(int(m.group(1))):
                Path(entry.path).unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


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
