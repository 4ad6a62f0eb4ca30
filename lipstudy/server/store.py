"""The server's store: teams, their tokens and every submission, in one SQLite database (WAL mode).

The leaderboard is a query over the submissions table. Every submission the server acknowledges is
committed (``synchronous=FULL``: on disk, not just in the OS cache) before its answer is sent, and
SQLite's write-ahead log leaves a consistent database whatever moment the process is killed at.

Teams authenticate with a token: ``secrets.token_urlsafe(32)`` (256 random bits), printed once by
``lipstudy serve add-team NAME`` and stored only as its SHA-256. A slow hash would add nothing: the
token is random, not a password someone could guess from a dictionary.

Team names are normalised so that look-alikes are one team (:mod:`.names`). A token replaced while a
submission is in flight stops that submission too: it is recorded only if the team's token is still the
one it came with, checked in the transaction that records it (issue 41: a replaced token's upload was
still scored and recorded).

The leaderboard ranks by the score it shows (:func:`shown_score`), earlier first on a tie: ranking on
the unrounded mean IoU put a later submission one pixel better above an earlier one showing the same
score, which told its team one bit about a hidden label per submission (issue 41).

The database holds per-class scores withheld from teams: it is created with mode 0600 (SQLite gives its
``-wal`` and ``-shm`` files the database's mode), and an existing one of this user loses any group or
other access when opened.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import time
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from lipstudy.atomic import atomic_path

from .names import BadName, normalise_name

MAX_TOKEN_CHARS = 128
SCORE_DECIMALS = 4  # fractions to 0.01 percentage points, as the leaderboard shows them

SCHEMA = """
CREATE TABLE IF NOT EXISTS teams (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,                  -- normalised, as shown
    name_key TEXT NOT NULL UNIQUE,       -- look-alike names share a key
    token_sha256 TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,                  -- UTC, ISO 8601
    day TEXT NOT NULL,                   -- UTC date: the quota's day
    team_id INTEGER NOT NULL REFERENCES teams(id),
    method TEXT NOT NULL,
    sha256 TEXT NOT NULL,                -- of the uploaded zip
    bytes INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('scored', 'refused')),
    message TEXT,                        -- why it was refused
    n_images INTEGER,
    overall_acc REAL, mean_acc REAL, mean_iou REAL,
    per_class_iou TEXT,                  -- JSON {class: IoU}, kept for the organisers
    public_id TEXT                       -- the id a team is told (random: ids tell nothing of others)
);
CREATE INDEX IF NOT EXISTS submissions_team_day ON submissions (team_id, day);
CREATE INDEX IF NOT EXISTS submissions_rank ON submissions (status, mean_iou);
"""
_SQLITE_HEADER = b"SQLite format 3\0"


class QuotaExceeded(Exception):
    """The team has used its submissions for the day."""


class TokenReplaced(Exception):
    """The team's token was replaced after the submission was authenticated."""


class StoreError(Exception):
    """A database path that cannot be used (missing, a folder, another program's file); the message
    names it."""


@dataclass(frozen=True)
class Team:
    """A team as authenticated: ``token_sha256`` is the hash of the token it came with (None: not
    authenticated by a token)."""

    id: int
    name: str
    token_sha256: str | None = field(default=None, compare=False, repr=False)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def shown_score(x: float | None) -> float | None:
    """A score as the leaderboard and the answers show it (a fraction to ``SCORE_DECIMALS`` places)."""
    return None if x is None else round(float(x), SCORE_DECIMALS)


def utc_time(t: float) -> tuple[str, str]:
    """(ISO time, day) in UTC for epoch seconds ``t``."""
    g = time.gmtime(t)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", g), time.strftime("%Y-%m-%d", g)


class Store:
    """Teams and submissions in ``path``.

    A missing database is created (with its folder) only when ``create`` is true; otherwise, and for
    an existing file that is not this server's database, :class:`StoreError` names the problem (a
    mistyped ``--db`` must not start an empty leaderboard).

    Each call opens its own connection, so the store is safe to use from the server's worker threads;
    writers take SQLite's write lock with ``BEGIN IMMEDIATE`` so a quota check and the insert it
    guards are one transaction. ``clock`` (epoch seconds) is injectable for tests of the daily quota.
    """

    def __init__(self, path, clock: Callable[[], float] = time.time, create: bool = True):
        self.path = Path(path)
        self.clock = clock
        if self.path.is_dir():
            raise StoreError(f"{self.path}: is a folder, not a database")
        if not self.path.exists():
            if not create:
                raise StoreError(f"{self.path}: no such database (`lipstudy serve add-team NAME --db "
                                 f"{self.path}` creates one)")
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Empty, and this user's alone, before SQLite makes a database of it (with its default 0644).
            with suppress(FileExistsError):  # another process made it first
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        elif not _is_sqlite(self.path):
            raise StoreError(f"{self.path}: not an SQLite database")
        _private(self.path)
        try:
            with self._connect() as conn:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if not {"teams", "submissions"} <= tables:
                    if tables:
                        raise StoreError(f"{self.path}: an SQLite database of something else (tables "
                                         f"{', '.join(sorted(tables)[:5])}), not the server's")
                    if not create:
                        raise StoreError(f"{self.path}: an empty database, not the server's (`lipstudy serve "
                                         f"add-team NAME --db {self.path}` creates one)")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(SCHEMA)
                # Databases made before public ids: add the column (their old rows keep none).
                if "public_id" not in {r[1] for r in conn.execute("PRAGMA table_info(submissions)")}:
                    conn.execute("ALTER TABLE submissions ADD COLUMN public_id TEXT")
                conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS submissions_public ON submissions (public_id)")
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path}: unusable database ({e})") from None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as conn:
            conn.row_factory = sqlite3.Row
            conn.create_function("shown_score", 1, shown_score, deterministic=True)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            yield conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # teams -------------------------------------------------------------------------------------

    def add_team(self, name: str) -> tuple[Team, str]:
        """Register a team; returns it and its token (shown once: only the hash is stored)."""
        shown, key = normalise_name(name)
        token = secrets.token_urlsafe(32)
        with self._transaction() as conn:
            old = conn.execute("SELECT name FROM teams WHERE name_key = ?", (key,)).fetchone()
            if old:
                raise BadName(f"team {shown!r} is already registered (as {old['name']!r})")
            cur = conn.execute("INSERT INTO teams (name, name_key, token_sha256, created) VALUES (?, ?, ?, ?)",
                               (shown, key, hash_token(token), utc_time(self.clock())[0]))
            return Team(cur.lastrowid, shown, hash_token(token)), token

    def new_token(self, name: str) -> str:
        """Replace a team's token (a lost or leaked one stops working); returns the new token."""
        _, key = normalise_name(name)
        token = secrets.token_urlsafe(32)
        with self._transaction() as conn:
            cur = conn.execute("UPDATE teams SET token_sha256 = ? WHERE name_key = ?", (hash_token(token), key))
            if cur.rowcount != 1:
                raise BadName(f"no team named {name!r}")
        return token

    def team_for_token(self, token: str) -> Team | None:
        """The team a bearer token belongs to, or None."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        digest = hash_token(token)
        with self._connect() as conn:
            row = conn.execute("SELECT id, name, token_sha256 FROM teams WHERE token_sha256 = ?",
                               (digest,)).fetchone()
        # The lookup is by hash (an attacker cannot steer a guess towards a stored hash); the final
        # comparison is constant-time all the same.
        if row is None or not hmac.compare_digest(row["token_sha256"], digest):
            return None
        return Team(row["id"], row["name"], digest)

    def token_current(self, team: Team) -> bool:
        """Whether ``team``'s token is still the one it was authenticated with."""
        with self._connect() as conn:
            return _token_current(conn, team)

    def teams(self) -> list[dict]:
        with self._connect() as conn:
            return [dict(r) for r in conn.execute("SELECT id, name, created FROM teams ORDER BY id")]

    # submissions -------------------------------------------------------------------------------

    def usage(self, team: Team) -> dict:
        """Today's (UTC) submissions of a team: ``{"day", "scored", "attempts"}``."""
        day = utc_time(self.clock())[1]
        with self._connect() as conn:
            row = conn.execute("SELECT COUNT(*) AS attempts, COALESCE(SUM(status = 'scored'), 0) AS scored "
                               "FROM submissions WHERE team_id = ? AND day = ?", (team.id, day)).fetchone()
        return {"day": day, "scored": row["scored"], "attempts": row["attempts"]}

    def record(self, team: Team, method: str, sha256: str, nbytes: int, result: dict | None = None,
               message: str | None = None, quota: int | None = None, attempts: int | None = None) -> dict:
        """Store one submission (scored when ``result`` is given, else refused with ``message``) and
        commit it. A scored one past the team's daily ``quota`` is stored as refused and raises
        QuotaExceeded; past the daily ``attempts`` (every stored submission counts) nothing is stored
        and QuotaExceeded is raised. Both are counted in the transaction that inserts: checks made
        before it race (issue 24: 60 concurrent refusals against a cap of 50 were all stored). A team
        whose token was replaced since it was authenticated (``team.token_sha256``) records nothing:
        TokenReplaced, checked in the same transaction. Returns the stored row; ``public_id`` is the id
        the team is told."""
        now, day = utc_time(self.clock())
        status = "scored" if result is not None else "refused"
        over_quota = False
        with self._transaction() as conn:
            if not _token_current(conn, team):
                raise TokenReplaced(f"the token of team {team.name!r} was replaced after this submission "
                                    f"began; nothing was recorded")
            if attempts is not None:
                (used,) = conn.execute("SELECT COUNT(*) FROM submissions WHERE team_id = ? AND day = ?",
                                       (team.id, day)).fetchone()
                if used >= attempts:
                    raise QuotaExceeded(f"team {team.name!r} has used its {attempts} submissions for {day} (UTC)")
            if status == "scored" and quota is not None:
                (used,) = conn.execute("SELECT COUNT(*) FROM submissions WHERE team_id = ? AND day = ? "
                                       "AND status = 'scored'", (team.id, day)).fetchone()
                over_quota = used >= quota
                if over_quota:
                    status, result, message = "refused", None, f"daily quota of {quota} reached"
            m = (result or {}).get("metrics", {})
            cur = conn.execute(
                "INSERT INTO submissions (time, day, team_id, method, sha256, bytes, status, message, n_images, "
                "overall_acc, mean_acc, mean_iou, per_class_iou, public_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (now, day, team.id, method, sha256, nbytes, status, message, (result or {}).get("n_images"),
                 m.get("overall_acc"), m.get("mean_acc"), m.get("mean_iou"),
                 json.dumps(m["per_class_iou"]) if "per_class_iou" in m else None, secrets.token_hex(8)))
            row = dict(conn.execute("SELECT * FROM submissions WHERE id = ?", (cur.lastrowid,)).fetchone())
        if over_quota:
            raise QuotaExceeded(f"team {team.name!r} has used its {quota} scored submissions of {day} (UTC)")
        return row

    def leaderboard(self, limit: int = 1000) -> list[dict]:
        """Scored submissions, best mean IoU as shown (:func:`shown_score`) first, earlier first on a tie
        (ids follow the commits, so the times)."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT s.id, t.name AS team, s.method, s.time, s.n_images, s.overall_acc, s.mean_acc, s.mean_iou "
                "FROM submissions s JOIN teams t ON t.id = s.team_id WHERE s.status = 'scored' "
                "ORDER BY shown_score(s.mean_iou) IS NULL, shown_score(s.mean_iou) DESC, s.time, s.id "
                "LIMIT ?", (limit,)).fetchall()
        return [dict(r) for r in rows]

    def submissions(self) -> list[dict]:
        """Every stored submission (scored and refused), oldest first: the organisers' log."""
        with self._connect() as conn:
            return [dict(r) for r in conn.execute("SELECT * FROM submissions ORDER BY id")]

    def backup(self, dest) -> Path:
        """A consistent copy of the database at ``dest`` (SQLite's online backup; safe while serving),
        written under a temporary name and renamed, so ``dest`` is never half a database. An existing
        ``dest`` is replaced only if it is an SQLite database (an earlier backup), never the live one."""
        dest = Path(dest)
        if dest.is_dir():
            raise StoreError(f"{dest}: is a folder; give the backup's file name, e.g. {dest / 'backup.db'}")
        if dest.exists():
            if os.path.samefile(dest, self.path):
                raise StoreError(f"{dest}: is the database itself")
            if dest.stat().st_size and not _is_sqlite(dest):
                raise StoreError(f"{dest}: exists and is not an SQLite database; not overwritten")
        with atomic_path(dest) as tmp, self._connect() as src, closing(sqlite3.connect(tmp)) as out:
            src.backup(out)
        return dest

    def integrity(self) -> str:
        """``"ok"`` when SQLite's integrity check finds nothing wrong."""
        with self._connect() as conn:
            return conn.execute("PRAGMA integrity_check").fetchone()[0]


def _token_current(conn: sqlite3.Connection, team: Team) -> bool:
    if team.token_sha256 is None:
        return True
    row = conn.execute("SELECT token_sha256 FROM teams WHERE id = ?", (team.id,)).fetchone()
    return row is not None and hmac.compare_digest(row["token_sha256"], team.token_sha256)


def _private(path: Path) -> None:
    """No group or other access to this user's database and its -wal / -shm files (an earlier version
    made them with SQLite's default 0644)."""
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        if st.st_uid == os.geteuid() and st.st_mode & 0o077:
            p.chmod(st.st_mode & 0o700)


def _is_sqlite(path: Path) -> bool:
    """Whether ``path`` is empty (SQLite makes a database of it) or starts with SQLite's header."""
    with open(path, "rb") as f:
        head = f.read(len(_SQLITE_HEADER))
    return head in (b"", _SQLITE_HEADER)
