"""Receiving a submission's body: the refusal an endpoint answers with, one upload at a time per team,
the temporary file it is streamed to, and the deadlines it must meet.

A body has three deadlines, all answered with 408 and the connection closed: no pause longer than
``body_idle_timeout_s`` between two chunks; after the first ``upload_grace_s`` seconds, an average of
at least ``min_upload_rate`` bytes a second (so a body of N bytes has ``upload_grace_s + N /
min_upload_rate`` seconds); and ``body_timeout_s`` for the whole body. Issue 24 held every upload slot
for ten minutes with eight connections sending a byte every 4 s: each met the pause limit, none met a
rate. An upload that fails, or whose client goes away, is recorded as a refused attempt by the caller:
holding a slot costs one of the team's daily attempts.

Uploads are files ``lipstudy-upload-<pid>-*.zip`` (mode 0600, from :func:`tempfile.mkstemp`) in a folder
private to the server: by default ``uploads/`` beside the database, made with mode 0700 (issue 41: in
the shared ``/tmp`` any local user could squat the names). A server starting removes the files of
processes that are no longer running (a killed server cannot remove its own); it never touches another
user's files, and skips a file it cannot remove: in a shared folder such as ``/tmp`` with its sticky
bit, another user's file named like a stale upload stopped the server from starting.
"""
from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
import time
from contextlib import aclosing, contextmanager
from pathlib import Path

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

PREFIX = "lipstudy-upload-"
_WRITE_BYTES = 2 ** 20  # an upload is written to disk in blocks of this size
_STALE = re.compile(re.escape(PREFIX) + r"(\d+)-\w+\.zip")


class Refusal(Exception):
    """An answer other than 200. ``close`` when the request cannot be finished (a body cut short, too
    slow, or past the cap mid-stream). Answers sent before the body is read leave the connection open:
    uvicorn then discards the body as it comes, for at most ``header_timeout_s``
    (``run.GuardedH11``), so a client that writes its whole body before reading still gets the
    answer instead of a connection reset."""

    def __init__(self, status: int, message: str, close: bool = False, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status, self.close, self.headers, self.extra = status, close, dict(headers or {}), extra

    def response(self) -> JSONResponse:
        headers = dict(self.headers)
        if self.close:
            headers["Connection"] = "close"
        return JSONResponse({"error": str(self), **self.extra}, self.status, headers=headers)


class TeamUploads:
    """At most ``limit`` submissions of one team in progress at once (from the first byte of the body to
    the answer); the next one is refused at once with 429. Without it one team's connections could take
    every upload slot. State of the event loop's thread only: no lock needed."""

    def __init__(self, limit: int):
        self.limit, self.active = limit, {}

    @contextmanager
    def hold(self, team):
        if self.active.get(team.id, 0) >= self.limit:
            raise Refusal(429, f"team {team.name!r} already has {self.limit} submission(s) in progress; send "
                               f"the next when it has been answered", headers={"Retry-After": "10"})
        self.active[team.id] = self.active.get(team.id, 0) + 1
        try:
            yield
        finally:
            self.active[team.id] -= 1
            if not self.active[team.id]:
                del self.active[team.id]


class Upload:
    """A body being received: its temporary file (mode 0600), SHA-256 and size so far (also when it fails)."""

    def __init__(self, folder):
        fd, name = tempfile.mkstemp(prefix=f"{PREFIX}{os.getpid()}-", suffix=".zip", dir=folder)
        os.close(fd)
        self.path, self.sha, self.nbytes = Path(name), hashlib.sha256(), 0

    def digest(self) -> str:
        return self.sha.hexdigest()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def private_folder(path) -> Path:
    """``path`` as the server's own upload folder: made with mode 0700 if missing (its parents as usual);
    an existing one of this user loses any group or other access. A folder of another user is refused
    (:class:`PermissionError` naming it)."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid != os.geteuid():
        raise PermissionError(f"{path}: the upload folder belongs to another user (uid {st.st_uid}); give "
                              f"--upload-dir a folder of your own")
    if st.st_mode & 0o077:
        path.chmod(0o700)
    return path


def sweep(folder) -> tuple[int, int]:
    """Remove the upload files in ``folder`` of processes no longer running; (removed, skipped). Only
    this user's regular files are touched; one that cannot be removed (a sticky shared folder, a
    read-only one) is skipped, never an error."""
    removed = skipped = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            m = _STALE.fullmatch(entry.name)
            if not m:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or _alive(int(m.group(1))):
                    continue
                os.unlink(entry.path)
                removed += 1
            except FileNotFoundError:  # another server removed it first
                pass
            except OSError:
                skipped += 1
    return removed, skipped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


async def receive(request: Request, upload: Upload, declared: int | None, cap: int, settings) -> bool:
    """Stream the body into ``upload`` within the deadlines of ``settings``; False if the client went
    away. Raises Refusal: 413 past ``cap``, 408 past a deadline, 400 if shorter or longer than declared."""
    s = settings
    start = time.monotonic()
    pending = bytearray()

    def late(now: float) -> Refusal:
        got, took = upload.nbytes, now - start
        if took >= s.body_timeout_s:
            why = f"the body took more than {s.body_timeout_s:g} s"
        elif s.min_upload_rate and took >= s.upload_grace_s + got / s.min_upload_rate:
            why = (f"the body arrived slower than {s.min_upload_rate:g} bytes/s (after the first "
                   f"{s.upload_grace_s:g} s)")
        else:
            why = f"no data for {s.body_idle_timeout_s:g} s"
        return Refusal(408, f"{why}: {got} bytes arrived in {took:.0f} s; the body was not received in time",
                       close=True)

    try:
        with anyio.fail_after(s.body_timeout_s):
            async with await anyio.open_file(upload.path, "wb") as f, aclosing(request.stream()) as chunks:
                while True:
                    now = time.monotonic()
                    wait = min(s.body_idle_timeout_s, start + s.body_timeout_s - now)
                    if s.min_upload_rate:
                        wait = min(wait, start + s.upload_grace_s + upload.nbytes / s.min_upload_rate - now)
                    chunk = None
                    if wait > 0:
                        with anyio.move_on_after(wait) as waited:
                            chunk = await anext(chunks, None)
                    if wait <= 0 or waited.cancelled_caught:
                        upload.sha.update(pending)
                        raise late(time.monotonic())
                    if chunk is None or len(pending) >= _WRITE_BYTES:
                        # Hash and write in a worker thread, a megabyte at a time: the event loop
                        # keeps serving other clients, and thread hand-offs stay few.
                        await anyio.to_thread.run_sync(upload.sha.update, pending)
                        await f.write(pending)
                        pending = bytearray()
                    if chunk is None:
                        break
                    upload.nbytes += len(chunk)
                    pending += chunk
                    if upload.nbytes > cap:
                        upload.sha.update(pending)
                        raise Refusal(413, f"body passed the {cap}-byte limit", close=True)
    except TimeoutError:
        raise late(time.monotonic()) from None
    except ClientDisconnect:
        upload.sha.update(pending)
        return False
    if declared is not None and upload.nbytes != declared:
        raise Refusal(400, f"body of {upload.nbytes} bytes but Content-Length said {declared}", close=True)
    return True
