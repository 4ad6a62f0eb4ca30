"""The server's SQLite store: name normalisation, hashed tokens, the daily quota, the leaderboard query,
the team commands of `lipstudy serve`."""
import sqlite3
import subprocess
import sys
import threading
import unicodedata

import pytest

from lipstudy.server import BadName, QuotaExceeded, Store, main, normalise_name
from lipstudy.server.store import hash_token

RESULT = {"n_images": 3, "metrics": {"overall_acc": 0.5, "mean_acc": 0.4, "mean_iou": 0.3,
                                     "per_class_iou": {"background": 0.9, "hat": None}}}


def _result(miou):
    return {"n_images": 3, "metrics": {**RESULT["metrics"], "mean_iou": miou}}


@pytest.mark.parametrize("variant", [
    "baseline", "Baseline", "  baseline ", "BASELINE", "ｂａｓｅｌｉｎｅ",  # full-width letters (NFKC)
    "b\u0430seline",  # Cyrillic а
    "bas\u0435lin\u0435",  # Cyrillic е
    "baseline\u00a0",  # no-break space, trimmed
])
def test_look_alike_names_are_one_team(variant):
    assert normalise_name(variant)[1] == normalise_name("baseline")[1]


@pytest.mark.parametrize("bad, why", [
    ("baseline\u200b", "invisible"), ("a\x00b", "control"), ("a\nb", "control"), ("\u202eevil", "invisible"),
    ("x" * 65, "65 characters"), ("   ", "empty"), ("", "empty"),
])
def test_unusable_names_are_refused(bad, why):
    with pytest.raises(BadName, match=why):
        normalise_name(bad)


@pytest.mark.parametrize("invisible", ["\u3164", "\uffa0", "\u115f", "\u1160", "\u2800", "\u034f", "\ufe0f",
                                       "\U000e0100", "\u17b4", "\u180f"])
def test_names_padded_with_invisible_letters_are_refused(invisible):
    """Issue 24: Hangul fillers, the braille blank, the grapheme joiner and variation selectors are
    printable to Python, so "Alpha" followed by one registered as a second team that renders as "Alpha"."""
    for name in ("Alpha" + invisible, invisible, "Al" + invisible + "pha"):
        with pytest.raises(BadName, match=f"invisible characters \\(U\\+{ord(invisible):04X}"):
            normalise_name(name)
        with pytest.raises(BadName, match="method name contains control or invisible"):
            normalise_name(name, "method name")


def test_the_default_ignorable_table():
    """The table is Unicode's Default_Ignorable_Code_Point: 4174 code points (DerivedCoreProperties.txt,
    Unicode 14.0.0); every one and the blanks are refused, their neighbours are not. Where Perl is
    installed, its own copy of the Unicode database is compared with the table."""
    import shutil
    import subprocess

    from lipstudy.server.names import BLANK, DEFAULT_IGNORABLE, default_ignorable

    points = [c for lo, hi in DEFAULT_IGNORABLE for c in range(lo, hi + 1)]
    assert len(points) == len(set(points)) == 4174
    for c in points + list(BLANK):
        with pytest.raises(BadName):
            normalise_name("a" + chr(c) + "b")
    for lo, hi in DEFAULT_IGNORABLE:
        assert not default_ignorable(chr(lo - 1)) and not default_ignorable(chr(hi + 1))
    for ok in ("\u00ac", "\u0350", "\u115e", "\u1161", "\u3165", "\u2801", "\ufe10"):
        assert normalise_name("a" + ok)[0] == unicodedata.normalize("NFKC", "a" + ok)
    perl = shutil.which("perl")
    if perl is None:
        return
    out = subprocess.run([perl, "-MUnicode::UCD=prop_invlist", "-e",
                          'print join(",", prop_invlist("Default_Ignorable_Code_Point")), "\n";',
                          ], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:  # a Perl without Unicode::UCD
        return
    bounds = [int(x) for x in out.stdout.split(",")]
    assert [(lo, hi + 1) for lo, hi in DEFAULT_IGNORABLE] == list(zip(bounds[::2], bounds[1::2]))


def test_names_keep_their_display_form():
    assert normalise_name("  Team   Ω  ") == ("Team Ω", "team ω")
    assert normalise_name("x" * 64)[0] == "x" * 64


def test_tokens_are_stored_hashed_and_authenticate(tmp_path):
    store = Store(tmp_path / "s.db")
    team, token = store.add_team("Alpha")
    assert len(token) >= 40
    assert store.team_for_token(token) == team
    assert store.team_for_token(token + "x") is None
    assert store.team_for_token("") is None and store.team_for_token("a" * 10_000) is None
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("s.db*"))  # the database and any WAL left
    assert token.encode() not in raw and hash_token(token).encode() in raw
    with pytest.raises(BadName, match="already registered"):
        store.add_team("ALPHA ")
    with pytest.raises(BadName, match="already registered"):
        store.add_team("\u0430lpha")  # Cyrillic а
    new = store.new_token("alpha")
    assert store.team_for_token(token) is None and store.team_for_token(new) == team


def test_wal_mode_and_schema(tmp_path):
    Store(tmp_path / "s.db")
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"teams", "submissions"}


def test_daily_quota_and_its_reset(tmp_path):
    now = [86400 * 20000 + 3600.0]  # 1 a.m. UTC
    store = Store(tmp_path / "s.db", clock=lambda: now[0])
    team, _ = store.add_team("a")
    store.record(team, "m", "0" * 64, 10, result=_result(0.1), quota=2)
    store.record(team, "m", "0" * 64, 10, message="refused: not a zip", quota=2)  # refusals do not count
    store.record(team, "m", "0" * 64, 10, result=_result(0.2), quota=2)
    assert store.usage(team) == {"day": "2024-10-04", "scored": 2, "attempts": 3}
    with pytest.raises(QuotaExceeded, match="used its 2 scored submissions of 2024-10-04"):
        store.record(team, "m", "0" * 64, 10, result=_result(0.9), quota=2)
    assert [r["mean_iou"] for r in store.leaderboard()] == [0.2, 0.1]  # the one past the quota is not ranked
    assert store.submissions()[-1]["status"] == "refused"
    now[0] += 23 * 3600  # the next UTC day
    store.record(team, "m", "0" * 64, 10, result=_result(0.9), quota=2)
    assert store.leaderboard()[0]["mean_iou"] == 0.9


def test_leaderboard_order_and_backup(tmp_path):
    store = Store(tmp_path / "s.db")
    a, _ = store.add_team("a")
    b, _ = store.add_team("b")
    store.record(a, "first", "0" * 64, 1, result=_result(0.3))
    store.record(b, "better", "0" * 64, 1, result=_result(0.5))
    store.record(a, "tie", "0" * 64, 1, result=_result(0.3))
    board = store.leaderboard()
    assert [(r["team"], r["method"]) for r in board] == [("b", "better"), ("a", "first"), ("a", "tie")]
    copy = Store(store.backup(tmp_path / "backup" / "copy.db"))
    assert copy.leaderboard() == board and copy.integrity() == "ok"


def test_team_commands(tmp_path, capsys):
    db = tmp_path / "s.db"
    assert main(["add-team", "Lab One", "--db", str(db)]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert Store(db).team_for_token(token).name == "Lab One"
    assert main(["add-team", "lab one", "--db", str(db)]) == 1
    assert "already registered" in capsys.readouterr().err
    assert main(["teams", "--db", str(db)]) == 0
    assert "Lab One" in capsys.readouterr().out
    assert main(["new-token", "LAB ONE", "--db", str(db)]) == 0
    new = capsys.readouterr().out.strip()
    assert Store(db).team_for_token(token) is None and Store(db).team_for_token(new).name == "Lab One"
    assert main(["backup", str(tmp_path / "b.db"), "--db", str(db)]) == 0
    assert Store(tmp_path / "b.db").teams()[0]["name"] == "Lab One"


def test_attempt_cap_is_counted_where_the_submission_is_recorded(tmp_path):
    """Issue 24: the daily attempt cap was checked before the recording transaction, so 60 concurrent
    refusals against a cap of 50 were all stored. 12 threads record at once against a cap of 5."""
    store = Store(tmp_path / "s.db")
    team, _ = store.add_team("a")
    start, outcomes = threading.Barrier(12), []

    def one():
        start.wait(10)
        try:
            store.record(team, "m", "0" * 64, 10, message="refused: not a zip", attempts=5)
            outcomes.append("stored")
        except QuotaExceeded as e:
            outcomes.append(str(e))

    threads = [threading.Thread(target=one) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes).count("stored") == 5 and len(outcomes) == 12
    assert all("used its 5 submissions" in o for o in outcomes if o != "stored")
    assert len(store.submissions()) == 5 and store.usage(team)["attempts"] == 5
    with pytest.raises(QuotaExceeded):  # a scored one too: the cap counts every attempt
        store.record(team, "m", "0" * 64, 10, result=_result(0.5), quota=5, attempts=5)
    assert store.leaderboard() == []


def test_submission_ids_tell_nothing_of_other_teams(tmp_path):
    store = Store(tmp_path / "s.db")
    a, _ = store.add_team("a")
    b, _ = store.add_team("b")
    ids = [store.record(t, "m", "0" * 64, 1, result=_result(0.1))["public_id"] for t in (a, b, a, b, a)]
    assert len(set(ids)) == 5 and all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
    # A database made before public ids gains the column; its old rows keep none.
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as conn:
        conn.executescript("CREATE TABLE teams (id INTEGER PRIMARY KEY, name TEXT NOT NULL, name_key TEXT NOT NULL "
                           "UNIQUE, token_sha256 TEXT NOT NULL UNIQUE, created TEXT NOT NULL);"
                           "CREATE TABLE submissions (id INTEGER PRIMARY KEY, time TEXT NOT NULL, day TEXT NOT NULL, "
                           "team_id INTEGER NOT NULL, method TEXT NOT NULL, sha256 TEXT NOT NULL, bytes INTEGER NOT "
                           "NULL, status TEXT NOT NULL, message TEXT, n_images INTEGER, overall_acc REAL, mean_acc "
                           "REAL, mean_iou REAL, per_class_iou TEXT);"
                           "INSERT INTO teams VALUES (1, 'a', 'a', 'x', 'then');"
                           "INSERT INTO submissions (time, day, team_id, method, sha256, bytes, status) "
                           "VALUES ('t', 'd', 1, 'm', 's', 1, 'refused');")
    migrated = Store(old, create=False)
    team = migrated.teams()[0]
    row = migrated.record(type(a)(team["id"], team["name"]), "m", "0" * 64, 1, message="x")
    assert [r["public_id"] for r in migrated.submissions()] == [None, row["public_id"]]


def test_commands_other_than_add_team_refuse_a_missing_database(tmp_path, capsys):
    """Issue 24: a mistyped --db silently created an empty database. add-team creates one; teams,
    new-token, backup and serve name the missing file and leave it missing."""
    missing = tmp_path / "typo" / "lipstudy.db"
    for argv in (["teams"], ["new-token", "a"], ["backup", str(tmp_path / "b.db")]):
        assert main([*argv, "--db", str(missing)]) == 1
        assert "no such database" in capsys.readouterr().err
    assert not missing.exists() and not missing.parent.exists()
    serve = subprocess.run([sys.executable, "-m", "lipstudy.cli", "serve", "--data", str(tmp_path), "--db",
                            str(missing), "--port", "0"], capture_output=True, text=True, timeout=60)
    assert serve.returncode == 1 and "no such database" in serve.stderr and not missing.exists()
    # Another program's file, or another program's SQLite database: named, left as it was.
    text = tmp_path / "notes.txt"
    text.write_text("not a database")
    assert main(["teams", "--db", str(text)]) == 1
    assert "not an SQLite database" in capsys.readouterr().err and text.read_text() == "not a database"
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE photos (id INTEGER)")
    assert main(["add-team", "a", "--db", str(other)]) == 1
    assert "an SQLite database of something else (tables photos)" in capsys.readouterr().err
    assert main(["add-team", "a", "--db", str(missing)]) == 0 and missing.is_file()


def test_backup_refuses_folders_other_files_and_the_database_itself(tmp_path, capsys):
    """Issue 24: `backup` onto a folder or a non-database file ended in a traceback."""
    db = tmp_path / "s.db"
    store = Store(db)
    store.add_team("a")
    assert main(["backup", str(tmp_path), "--db", str(db)]) == 1
    assert "is a folder; give the backup's file name" in capsys.readouterr().err
    text = tmp_path / "notes.txt"
    text.write_text("keep me")
    assert main(["backup", str(text), "--db", str(db)]) == 1
    assert "exists and is not an SQLite database; not overwritten" in capsys.readouterr().err
    assert text.read_text() == "keep me"
    assert main(["backup", str(db), "--db", str(db)]) == 1
    assert "is the database itself" in capsys.readouterr().err
    copy = tmp_path / "backups" / "b.db"
    assert main(["backup", str(copy), "--db", str(db)]) == 0
    store.add_team("b")
    assert main(["backup", str(copy), "--db", str(db)]) == 0  # an earlier backup is replaced
    assert [t["name"] for t in Store(copy, create=False).teams()] == ["a", "b"]
    assert sorted(p.name for p in copy.parent.iterdir()) == ["b.db"]  # no temporary file left


# ---------------------------------------------------------------------------------------------
# issue 41


def test_ranks_follow_the_score_shown_and_ties_the_submission_time(tmp_path):
    """Ranking on the unrounded mean IoU put a later submission one pixel better above an earlier one
    showing the same score: one bit about a hidden label per submission."""
    now = [1_800_000_000.0]
    store = Store(tmp_path / "s.db", clock=lambda: now[0])
    a, _ = store.add_team("a")
    b, _ = store.add_team("b")
    store.record(a, "earlier", "0" * 64, 1, result=_result(0.500011))
    now[0] += 60
    store.record(b, "later, one pixel better", "0" * 64, 1, result=_result(0.500049))  # both show 0.5000
    now[0] += 60
    store.record(b, "better as shown", "0" * 64, 1, result=_result(0.50006))  # shows 0.5001
    board = store.leaderboard()
    assert [r["method"] for r in board] == ["better as shown", "earlier", "later, one pixel better"]
    from lipstudy.server.store import shown_score

    assert shown_score(0.500011) == shown_score(0.500049) == 0.5 and shown_score(0.50006) == 0.5001
    # The stored scores stay unrounded, for the organisers.
    assert sorted(r["mean_iou"] for r in store.submissions()) == [0.500011, 0.500049, 0.50006]


def test_a_replaced_token_records_nothing(tmp_path):
    """Issue 41: a token replaced mid-upload still finished that upload. The store checks the token a
    submission was authenticated with in the transaction that records it."""
    from lipstudy.server.store import TokenReplaced

    store = Store(tmp_path / "s.db")
    _, token = store.add_team("a")
    team = store.team_for_token(token)
    assert store.token_current(team)
    store.record(team, "m", "0" * 64, 1, result=_result(0.3))
    store.new_token("a")
    assert not store.token_current(team)
    for kw in (dict(result=_result(0.9)), dict(message="refused: not a zip")):
        with pytest.raises(TokenReplaced, match="token of team 'a' was replaced"):
            store.record(team, "m", "0" * 64, 1, **kw)
    assert len(store.submissions()) == 1


def test_the_database_is_this_users_alone(tmp_path):
    """Issue 41: the database (per-class scores withheld from teams, token hashes) was created 0644."""
    import os
    import stat

    db = tmp_path / "server" / "s.db"
    store = Store(db)
    team, _ = store.add_team("a")
    with sqlite3.connect(db) as reader:  # an open reader keeps the -wal and -shm files
        reader.execute("SELECT COUNT(*) FROM teams").fetchone()
        store.record(team, "m", "0" * 64, 1, result=_result(0.3))
        files = [db, db.with_name("s.db-wal"), db.with_name("s.db-shm")]
        assert all(p.exists() for p in files)
        assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {"0o600"}
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.backup(tmp_path / "backup.db").stat().st_mode) == 0o600
    # A database made by an earlier version (SQLite's default mode) is made private when opened.
    old = tmp_path / "old.db"
    sqlite3.connect(old).close()
    os.chmod(old, 0o644)
    Store(old)
    assert stat.S_IMODE(old.stat().st_mode) == 0o600
