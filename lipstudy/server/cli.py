"""``lipstudy serve``: run the evaluation server, score one submission, manage teams, back up."""
from __future__ import annotations

import argparse
import json
import sys

from lipstudy.data.decode import DataError

DEFAULT_DB = "results/server/lipstudy.db"

USAGE = """\
lipstudy serve --data ROOT [--labels DIR] [--db FILE] [--host H] [--port P] [--quota N] [...]
lipstudy serve --data ROOT [--labels DIR] --score SUBMISSION     # score a zip or folder once, print JSON
lipstudy serve add-team NAME [--db FILE]                          # register a team (creates FILE), print its token
lipstudy serve new-token NAME [--db FILE]                         # replace a lost or leaked token
lipstudy serve teams [--db FILE]                                  # list the teams
lipstudy serve backup DEST [--db FILE]                            # consistent copy, safe while serving"""


def _serve_parser() -> argparse.ArgumentParser:
    from . import __doc__ as doc

    ap = argparse.ArgumentParser(prog="lipstudy serve", usage=USAGE, description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="benchmark root (LIP layout)")
    ap.add_argument("--labels", help="hidden label folder (default: DATA/server/test_segmentations)")
    ap.add_argument("--score", help="score this submission (zip or folder) once, print JSON and exit")
    ap.add_argument("--db", default=DEFAULT_DB, help="SQLite database of teams and submissions, made by "
                                                     "`add-team` (default: %(default)s)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed)")
    ap.add_argument("--quota", type=int, default=5, help="scored submissions a team a UTC day")
    ap.add_argument("--max-upload-mb", type=float,
                    help="largest upload (default: what the test set's PNGs can need, at most 512 MiB)")
    ap.add_argument("--scoring-threads", type=int, default=2)
    ap.add_argument("--upload-dir", help="where uploads are streamed (default: uploads/ beside the database, "
                                         "made private to this user, mode 0700)")
    ap.add_argument("--max-connections-per-address", type=int, default=32, metavar="N",
                    help="open connections from one client address (default %(default)s); 0 for none, behind "
                         "a reverse proxy, where every connection comes from the proxy")
    return ap


def _team_command(argv: list[str]) -> int:
    from .names import BadName
    from .store import Store, StoreError

    ap = argparse.ArgumentParser(prog=f"lipstudy serve {argv[0]}", usage=USAGE)
    if argv[0] in ("add-team", "new-token"):
        ap.add_argument("name")
    elif argv[0] == "backup":
        ap.add_argument("dest")
    ap.add_argument("--db", default=DEFAULT_DB)
    args = ap.parse_args(argv[1:])
    try:
        # Only add-team makes a database: any other command given a mistyped --db says so.
        store = Store(args.db, create=argv[0] == "add-team")
        if argv[0] == "add-team":
            team, token = store.add_team(args.name)
            print(f"team {team.name!r} registered in {args.db}. Its token (shown once, only its hash is stored):")
            print(token)
        elif argv[0] == "new-token":
            print(store.new_token(args.name))
        elif argv[0] == "teams":
            for t in store.teams():
                print(f"{t['id']:>4}  {t['name']}  (since {t['created']})")
        else:
            print(f"backed up {args.db} to {store.backup(args.dest)}")
    except (BadName, StoreError) as e:
        print(f"lipstudy serve: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("add-team", "new-token", "teams", "backup"):
        return _team_command(argv)
    args = _serve_parser().parse_args(argv)
    from .entries import SubmissionError
    from .hidden import HiddenTestSet
    from .store import Store, StoreError
    from .submission import score_submission

    try:
        store = None if args.score else Store(args.db, create=False)  # before the labels: it is quick
        test_set = HiddenTestSet.from_root(args.data, args.labels)
        if args.score:
            result = score_submission(args.score, test_set)
            print(json.dumps({"n_images": result["n_images"], **result["metrics"]}, indent=1))
            return 0
    except (DataError, SubmissionError, StoreError) as e:
        print(f"lipstudy serve: {e}", file=sys.stderr)
        return 1
    problems = test_set.check()
    if problems:
        print("lipstudy serve: the hidden labels have problems:\n  " + "\n  ".join(problems[:50]), file=sys.stderr)
        return 1
    return _run(args, test_set, store)


def _run(args, test_set, store) -> int:
    import logging

    import uvicorn

    from .app import Settings, create_app
    from .run import bind, uvicorn_config

    # The app's records (what clients provoke, rate-limited: .log) with their time; uvicorn's own loggers
    # keep uvicorn's format.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings(daily_quota=args.quota, scoring_threads=args.scoring_threads, upload_dir=args.upload_dir,
                        max_upload_bytes=int(args.max_upload_mb * 2 ** 20) if args.max_upload_mb else None,
                        max_connections_per_address=args.max_connections_per_address)
    try:
        app = create_app(test_set, store, settings)
    except OSError as e:  # the upload folder: another user's, or not writable
        print(f"lipstudy serve: {e}", file=sys.stderr)
        return 1
    sock = bind(args.host, args.port)
    port = sock.getsockname()[1]
    print(f"serving {len(test_set.ids)} hidden test images on http://{args.host}:{port}/ "
          f"(database {args.db}, {len(store.teams())} teams, uploads up to "
          f"{app.state.submissions.upload_cap} bytes)", flush=True)
    uvicorn.Server(uvicorn_config(app, settings, args.host, port)).run(sockets=[sock])
    return 0
