"""The HTTP front: a Starlette app served by uvicorn, with every limit set.

``POST /submit?method=M`` (the zip as the body, ``Authorization: Bearer <token>``), ``GET /`` (the HTML
leaderboard), ``GET /leaderboard`` (JSON). A submission goes through, in order:

1. the token (401 before a byte of the body is read), the method name (400), ``Content-Length``
   (411 if absent and not chunked, 400 if not a number, 413 if above the cap; with
   ``Transfer-Encoding`` too, :mod:`.run` has already answered 400 and closed);
2. the team's own upload slot (429 while another submission of the team is in progress) and its
   daily quota and attempts (429);
3. an upload slot (at most ``max_uploads`` bodies on disk at once; 503 after ``upload_wait_s``);
4. the body, streamed to a temporary file with a hard byte cap (413 as soon as it is passed), a
   longest pause, a minimum rate and a total deadline (408: :mod:`.uploads`); a body cut short is
   never scored, and is recorded as a refused attempt;
5. the token again (401, nothing recorded, if it was replaced meanwhile), scoring in a worker thread
   (at most ``scoring_threads`` at once); the answer is sent only after the submission is committed to
   the database, with the attempt cap and the token checked in that same transaction.

Every refusal is a JSON ``{"error": ...}`` (422 adds ``"problems"``, one message per zip entry). A
submission is named to its team by a random id, which says nothing about other teams' activity. What
uvicorn itself refuses, the security headers of every answer and the timeouts of a connection are in
:mod:`.run`; what clients provoke is logged through one :class:`.log.ClientLog` (``app.state.client_log``,
shared with :mod:`.run`).
"""
from __future__ import annotations

import base64
import functools
import hashlib
import html
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from lipstudy.data.decode import DataError

from . import uploads
from .entries import Limits, SubmissionError
from .hidden import HiddenTestSet
from .log import ClientLog
from .names import BadName, normalise_name
from .store import QuotaExceeded, Store, TokenReplaced, shown_score
from .submission import score_submission
from .uploads import Refusal, TeamUploads, Upload

log = logging.getLogger("lipstudy.server")

# Per-class IoU is returned only for a hidden test set at least this large. Each answer measures the
# hidden labels; per-class IoU gives 20 numbers an answer instead of 3, and on a small set a few probe
# submissions (one class painted over one region at a time) pin the labels down: issue 11 recovered a
# small set's labels exactly with 19. On a large set each number averages over far more pixels, so the
# same recovery needs far more answers than the rounding and the daily quota let through. 500 is a
# judgement, not a proof; LIP's own test set has 10,000 images.
PER_CLASS_MIN_IMAGES = 500

_CSS = ("body{font-family:sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse}"
        "th,td{padding:.3em .8em;border-bottom:1px solid #ccc;text-align:left}td.n{text-align:right}")
_CSP = ("default-src 'none'; style-src 'sha256-" + base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()
        + "'; img-src 'none'; script-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# Sent with every answer, uvicorn's own included (:mod:`.run` gives them to uvicorn).
SECURITY_HEADERS = [("content-security-policy", _CSP), ("x-content-type-options", "nosniff"),
                    ("referrer-policy", "no-referrer"), ("cache-control", "no-store")]


@dataclass
class Settings:
    """The server's limits. The upload cap defaults to what the test set's predictions can need
    (:meth:`Limits.upload_cap`), so a small benchmark takes small uploads."""

    daily_quota: int = 5  # scored submissions a team a UTC day (LIP's server also limited them)
    daily_attempts: int = 50  # all submissions, refused ones included, a team a day
    max_upload_bytes: int | None = None
    max_uploads: int = 8  # bodies being received or scored at once (each is a file on disk)
    uploads_per_team: int = 1  # submissions of one team in progress at once
    upload_wait_s: float = 30.0  # how long a submission waits for an upload slot before a 503
    scoring_threads: int = 2
    header_timeout_s: float = 10.0  # from connecting (or the last answer) to a complete header section
    write_timeout_s: float = 10.0  # longest time an answer may wait for the client to read it
    send_buffer_bytes: int = 64 * 1024  # the kernel's send buffer of a connection (0: its autotuning)
    body_idle_timeout_s: float = 10.0  # longest pause between two chunks of a body
    # After the grace, a body must average this rate: a 100 MB submission (10,000 LIP predictions) then
    # has 25 minutes, past body_timeout_s anyway, while a trickle loses its slot within seconds.
    min_upload_rate: float = 64 * 1024  # bytes/s; 0: no minimum
    upload_grace_s: float = 10.0
    body_timeout_s: float = 600.0  # whole body
    keep_alive_s: int = 5
    limit_concurrency: int = 128  # connections + tasks; uvicorn answers 503 beyond
    max_connections_per_address: int = 32  # open connections from one client address; 0: no limit
    max_header_bytes: int = 16 * 1024  # request line and headers, as received
    per_class_min_images: int = PER_CLASS_MIN_IMAGES
    upload_dir: str | None = None  # default: uploads/ beside the database, mode 0700
    # What clients provoke (malformed requests, refused connections, bugs), logged at most once an
    # address each interval and log_records times in all, each record at most log_chars (:mod:`.log`).
    log_interval_s: float = 60.0
    log_records: int = 10
    log_chars: int = 1000
    limits: Limits = field(default_factory=Limits)


class Submissions:
    """The submission endpoint and its shared state (test set, store, limits)."""

    def __init__(self, test_set: HiddenTestSet, store: Store, settings: Settings, client_log: ClientLog):
        self.test_set, self.store, self.settings, self.client_log = test_set, store, settings, client_log
        self.upload_cap = settings.max_upload_bytes or settings.limits.upload_cap(test_set)
        self.uploads = anyio.Semaphore(settings.max_uploads)
        self.team_uploads = TeamUploads(settings.uploads_per_team)
        self.scoring = anyio.CapacityLimiter(settings.scoring_threads)
        if settings.upload_dir:  # the organisers' choice, even a shared folder: made if missing
            self.upload_dir = Path(settings.upload_dir)
            self.upload_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        else:
            self.upload_dir = uploads.private_folder(store.path.parent / "uploads")
        removed, skipped = uploads.sweep(self.upload_dir)
        if removed or skipped:
            log.warning("%s: removed %d upload files left by servers that are no longer running%s", self.upload_dir,
                        removed, f"; {skipped} could not be removed and were left" if skipped else "")

    async def submit(self, request: Request) -> JSONResponse:
        try:
            return await self._submit(request)
        except Refusal as r:
            return r.response()
        except Exception:  # a bug: log it, answer, keep serving
            self.client_log.log(logging.ERROR, _address(request), "submission failed", exc_info=True)
            return JSONResponse({"error": "internal error while handling the submission"}, 500)

    async def _submit(self, request: Request) -> JSONResponse:
        team = await self._authenticate(request)
        try:
            method, _ = normalise_name(request.query_params.get("method", ""), "method name")
        except BadName as e:
            raise Refusal(400, f"{e}; give ?method=NAME") from None
        declared = self._declared_length(request)
        with self.team_uploads.hold(team):
            await self._check_quota(team)
            acquired = False
            with anyio.move_on_after(self.settings.upload_wait_s):
                await self.uploads.acquire()
                acquired = True
            if not acquired:
                raise Refusal(503, "the server is busy with other uploads; try again shortly", close=True,
                              headers={"Retry-After": "10"})
            upload = Upload(self.upload_dir)
            try:
                return await self._receive_and_score(request, team, method, upload, declared)
            finally:
                upload.remove()
                self.uploads.release()

    async def _receive_and_score(self, request, team, method: str, upload: Upload, declared) -> JSONResponse:
        try:
            complete = await uploads.receive(request, upload, declared, self.upload_cap, self.settings)
        except Refusal as r:
            await self._record_refusal(team, method, upload, str(r))
            raise
        if not complete:  # nobody is listening for an answer; the attempt still counts
            await self._record_refusal(team, method, upload, f"client disconnected after {upload.nbytes} bytes")
            return JSONResponse({"error": "client disconnected"}, 400)
        return await self._score(team, method, upload)

    async def _record_refusal(self, team, method: str, upload: Upload, message: str) -> None:
        """Record a body that was not received as a refused attempt (none past the daily attempts, none
        for a token replaced meanwhile: its holder may not be the team)."""
        try:
            await anyio.to_thread.run_sync(functools.partial(
                self.store.record, team, method, upload.digest(), upload.nbytes, message=message,
                attempts=self.settings.daily_attempts))
        except (QuotaExceeded, TokenReplaced):
            pass

    async def _authenticate(self, request: Request):
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="lipstudy"'}
        if scheme.lower() != "bearer" or not token.strip():
            raise Refusal(401, "give your team's token: Authorization: Bearer <token> "
                               "(the organisers create it with `lipstudy serve add-team NAME`)", headers=challenge)
        team = await anyio.to_thread.run_sync(self.store.team_for_token, token.strip())
        if team is None:
            raise Refusal(401, "unknown token", headers=challenge)
        return team

    def _declared_length(self, request: Request) -> int | None:
        declared = request.headers.get("content-length")
        if declared is None:
            if "chunked" not in request.headers.get("transfer-encoding", "").lower():
                raise Refusal(411, "send the zip as the request body, with a Content-Length header")
            return None
        if not re.fullmatch(r"[0-9]{1,19}", declared.strip()):
            raise Refusal(400, f"Content-Length {declared[:40]!r} is not a number of bytes", close=True)
        n = int(declared)
        if n == 0:
            raise Refusal(400, "empty body: send the zip as the request body")
        if n > self.upload_cap:
            raise Refusal(413, f"Content-Length {n} is above the {self.upload_cap}-byte limit")
        return n

    async def _check_quota(self, team) -> None:
        used = await anyio.to_thread.run_sync(self.store.usage, team)
        s = self.settings
        if used["scored"] >= s.daily_quota or used["attempts"] >= s.daily_attempts:
            what = (f"{s.daily_quota} scored submissions" if used["scored"] >= s.daily_quota
                    else f"{s.daily_attempts} submissions")
            raise Refusal(429, f"team {team.name!r} has used its {what} for {used['day']} (UTC)",
                          headers={"Retry-After": str(_seconds_to_utc_midnight())})

    async def _score(self, team, method: str, upload: Upload) -> JSONResponse:
        score = functools.partial(score_submission, upload.path, self.test_set, self.settings.limits)
        record = functools.partial(self.store.record, team, method, upload.digest(), upload.nbytes,
                                   attempts=self.settings.daily_attempts)
        retry = {"Retry-After": str(_seconds_to_utc_midnight())}
        # A token replaced during the upload (the body may take minutes) stops the submission here, before
        # it is scored; store.record checks again in the transaction that records it.
        if not await anyio.to_thread.run_sync(self.store.token_current, team):
            raise _replaced()
        try:
            result = await anyio.to_thread.run_sync(score, limiter=self.scoring)
        except SubmissionError as e:
            try:
                row = await anyio.to_thread.run_sync(functools.partial(record, message="\n".join(e.problems)))
            except QuotaExceeded as q:  # past the attempts: not recorded, so not answered either
                raise Refusal(429, str(q), headers=retry) from None
            except TokenReplaced:
                raise _replaced() from None
            raise Refusal(422, "submission refused", problems=e.problems, submission=row["public_id"]) from None
        except DataError as e:  # a hidden label is broken: the organisers' problem, not the team's
            self.client_log.log(logging.ERROR, None, f"hidden labels: {e}")
            raise Refusal(500, "the server could not read its hidden labels; the organisers must fix them") from None
        try:
            row = await anyio.to_thread.run_sync(functools.partial(
                record, result=result, quota=self.settings.daily_quota))
        except QuotaExceeded as e:
            raise Refusal(429, str(e), headers=retry) from None
        except TokenReplaced:
            raise _replaced() from None
        answer = {"submission": row["public_id"], "team": team.name, "method": method, "time": row["time"],
                  "n_images": result["n_images"],
                  **{k: shown_score(result["metrics"][k]) for k in ("overall_acc", "mean_acc", "mean_iou")}}
        if len(self.test_set.ids) >= self.settings.per_class_min_images:
            answer["per_class_iou"] = {c: shown_score(v) for c, v in result["metrics"]["per_class_iou"].items()}
        else:
            answer["per_class_iou"] = (f"withheld: the hidden test set has {len(self.test_set.ids)} images, "
                                       f"fewer than {self.settings.per_class_min_images}")
        return JSONResponse(answer)


def _replaced() -> Refusal:
    return Refusal(401, "this team's token was replaced while the submission was uploading; nothing was scored "
                        "or recorded", headers={"WWW-Authenticate": 'Bearer realm="lipstudy"'})


def _address(request: Request) -> str | None:
    return request.client.host if request.client else None


def _seconds_to_utc_midnight() -> int:
    return 86400 - int(time.time()) % 86400


def _board(store: Store) -> list[dict]:
    return [{"rank": k + 1, "team": r["team"], "method": r["method"], "time": r["time"],
             **{m: shown_score(r[m]) for m in ("mean_iou", "overall_acc", "mean_acc")}}
            for k, r in enumerate(store.leaderboard())]


def leaderboard_html(rows: list[dict], test_set: HiddenTestSet, settings: Settings) -> str:
    """The leaderboard page; every value from the database goes through ``html.escape``."""
    def pct(x):
        return "" if x is None else f"{100 * x:.2f}"

    body = "".join(
        f"<tr><td class=n>{r['rank']}</td><td>{html.escape(r['team'])}</td><td>{html.escape(r['method'])}</td>"
        f"<td class=n>{pct(r['mean_iou'])}</td><td class=n>{pct(r['overall_acc'])}</td>"
        f"<td class=n>{pct(r['mean_acc'])}</td><td>{html.escape(r['time'].replace('T', ' ').rstrip('Z'))}</td></tr>"
        for r in rows)
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>Human parsing leaderboard</title>"
        f"<style>{_CSS}</style></head><body><h1>Human parsing leaderboard</h1>"
        f"<p>{len(test_set.ids)} hidden test images; {settings.daily_quota} scored submissions a team a day. "
        "Submit a zip of <code>&lt;id&gt;.png</code> class-id maps: <code>curl -H 'Authorization: Bearer "
        "TOKEN' --data-binary @preds.zip 'HOST/submit?method=NAME'</code>.</p>"
        "<table><thead><tr><th>#</th><th>team</th><th>method</th><th>mean IoU</th><th>pixel acc.</th>"
        f"<th>mean acc.</th><th>submitted (UTC)</th></tr></thead><tbody id=ranking>{body}</tbody></table>"
        "</body></html>")


def create_app(test_set: HiddenTestSet, store: Store, settings: Settings | None = None) -> Starlette:
    """The ASGI application (:mod:`.run` serves it with uvicorn)."""
    settings = settings or Settings()
    client_log = ClientLog(log, settings.log_interval_s, settings.log_records, settings.log_chars)
    submissions = Submissions(test_set, store, settings, client_log)

    async def index(request: Request) -> HTMLResponse:
        rows = await anyio.to_thread.run_sync(_board, store)
        return HTMLResponse(leaderboard_html(rows, test_set, settings))

    async def leaderboard(request: Request) -> JSONResponse:
        return JSONResponse(await anyio.to_thread.run_sync(_board, store))

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": f"{exc.detail}: {request.method} {request.url.path[:100]}"}, exc.status_code,
                            headers=exc.headers)

    app = Starlette(routes=[Route("/", index), Route("/leaderboard", leaderboard),
                            Route("/submit", submissions.submit, methods=["POST"])],
                    exception_handlers={HTTPException: http_error})
    app.state.submissions = submissions
    app.state.client_log = client_log
    return app
