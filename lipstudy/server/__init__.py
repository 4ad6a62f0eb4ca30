"""The benchmark's evaluation server: a hidden test set, authenticated teams, a leaderboard.

Sections 1 and 2 of the paper: "a public server for automatically reporting evaluation results" where
"the test set will be kept secret to avoid overfitting". A submission is what the LIP server takes: one
8-bit PNG of class ids per test image, named ``<id>.png``, in a ``.zip``. The server checks it as an
attacker would send it, scores it against labels it never serves, and records it.

    lipstudy serve add-team NAME [--db FILE]          # prints the team's token, once
    lipstudy serve --data ROOT [--db FILE] [--port P]  # POST /submit?method=M, GET /, GET /leaderboard
    lipstudy serve --data ROOT --score SUBMISSION      # score a zip or folder once, print JSON

    curl -H "Authorization: Bearer $TOKEN" --data-binary @preds.zip "http://HOST:8000/submit?method=NAME"

``ROOT`` is a LIP-layout benchmark whose hidden labels are in ``ROOT/server/test_segmentations/`` (the
synthetic benchmark writes them there), or give ``--labels DIR``. The database (teams, hashed tokens,
every submission) defaults to ``results/server/lipstudy.db`` (mode 0600), uploads are streamed to
``uploads/`` beside it (mode 0700).

What a submitter learns: pixel accuracy, mean accuracy and mean IoU, rounded to 0.01 percentage points;
per-class IoU only when the hidden set has at least ``PER_CLASS_MIN_IMAGES`` (500) images, because on a
small set per-class answers to a few probe submissions recover the hidden labels. Each team has a
daily quota of scored submissions (5 by default).

Modules: :mod:`.hidden` (the hidden labels), :mod:`.entries` (the zip's directory and bounded reads),
:mod:`.submission` (PNG checks and scoring), :mod:`.names` (team and method names), :mod:`.store`
(SQLite: teams, tokens, submissions), :mod:`.app` (the Starlette app: the submission endpoint and its
limits, the pages), :mod:`.run` (uvicorn: its limits and timeouts), :mod:`.log` (what clients provoke,
logged at a bounded rate and size), :mod:`.cli` (``lipstudy serve``).
The attacks the tests and ``benchmarks/server_*.py`` throw at it are ``tests/server_attacks.py``.
"""
from .app import PER_CLASS_MIN_IMAGES, Settings, create_app, leaderboard_html
from .cli import DEFAULT_DB, main
from .entries import Limits, SubmissionError
from .hidden import HiddenTestSet
from .names import BadName, normalise_name
from .run import RunningServer
from .store import QuotaExceeded, Store, StoreError
from .submission import read_prediction, score_submission

__all__ = ["PER_CLASS_MIN_IMAGES", "DEFAULT_DB", "BadName", "HiddenTestSet", "Limits", "QuotaExceeded",
           "RunningServer", "Settings", "Store", "StoreError", "SubmissionError", "create_app", "leaderboard_html",
           "main", "normalise_name", "read_prediction", "score_submission"]
