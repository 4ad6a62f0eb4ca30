"""The benchmark's evaluation server: a hidden test set, submissions, a leaderboard.

Section 1 and 2 of the paper: "a public server for automatically reporting evaluation results" where
"the test set will be kept secret to avoid overfitting". A submission is what the LIP server takes: one
8-bit grayscale PNG of class ids per test image, named ``<id>.png``, in a folder or a ``.zip``. The
server checks it is complete and well formed, scores it against the hidden labels (which it never
serves), and records the result on a leaderboard.

    lipstudy serve --data ROOT [--port 8000] [--leaderboard FILE]     # HTTP: POST /submit, GET /leaderboard
    lipstudy serve --data ROOT --score SUBMISSION                      # score once, print JSON

``ROOT`` is a LIP-layout benchmark whose hidden labels are in ``ROOT/server/test_segmentations/`` (the
synthetic benchmark writes them there), or give ``--labels DIR`` explicitly.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
from PIL import Image

from . import metrics
from .labels import LIP_CLASSES, LIP_NUM_CLASSES

MAX_UPLOAD_BYTES = 512 * 1024 * 1024


class SubmissionError(ValueError):
    """A submission the server refuses; the message says which file and what is wrong."""


@dataclass
class HiddenTestSet:
    """The secret labels: ids from ``test_id.txt`` and a folder of ``<id>.png``."""

    label_dir: Path
    ids: list[str]
    num_classes: int = LIP_NUM_CLASSES

    @classmethod
    def from_root(cls, root, label_dir=None) -> "HiddenTestSet":
        root = Path(root)
        label_dir = Path(label_dir) if label_dir else root / "server" / "test_segmentations"
        if not label_dir.is_dir():
            raise FileNotFoundError(f"hidden test labels not found: {label_dir}")
        id_files = [root / "Testing_images" / "test_id.txt", root / "test_id.txt"]
        id_file = next((p for p in id_files if p.is_file()), None)
        if id_file is None:
            ids = sorted(p.stem for p in label_dir.glob("*.png"))
        else:
            ids = [s.strip() for s in id_file.read_text().splitlines() if s.strip()]
        if not ids:
            raise FileNotFoundError(f"no test ids under {root} (looked for {[str(p) for p in id_files]})")
        return cls(label_dir, ids)

    def label(self, image_id: str) -> np.ndarray:
        return np.asarray(Image.open(self.label_dir / f"{image_id}.png"))


def _read_prediction(name: str, data: bytes, shape, num_classes: int) -> np.ndarray:
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
    except Exception as exc:  # PIL raises several types for broken files
        raise SubmissionError(f"{name}: not a readable PNG ({exc})") from None
    if im.mode not in ("L", "P"):
        raise SubmissionError(f"{name}: mode {im.mode}; submit 8-bit grayscale class ids (mode L), "
                              "not colour images")
    pred = np.asarray(im)
    if pred.shape != tuple(shape):
        raise SubmissionError(f"{name}: size {pred.shape[1]}x{pred.shape[0]} but the image is "
                              f"{shape[1]}x{shape[0]}; predict at the original resolution")
    if pred.max(initial=0) >= num_classes:
        bad = sorted(int(v) for v in np.unique(pred[pred >= num_classes]))
        raise SubmissionError(f"{name}: values {bad[:10]} are not class ids 0..{num_classes - 1}")
    return pred


def _submission_files(submission) -> dict[str, bytes]:
    """``{id: png bytes}`` from a folder or a zip (files may sit in one sub-folder)."""
    path = Path(submission)
    files: dict[str, bytes] = {}
    if path.is_dir():
        for p in path.rglob("*.png"):
            files[p.stem] = p.read_bytes()
    elif path.is_file():
        try:
            with zipfile.ZipFile(path) as z:
                for info in z.infolist():
                    if info.filename.endswith(".png") and not info.is_dir():
                        files[Path(info.filename).stem] = z.read(info)
        except zipfile.BadZipFile:
            raise SubmissionError(f"{path}: not a zip file") from None
    else:
        raise SubmissionError(f"{path}: no such file or folder")
    return files


def score_submission(submission, test_set: HiddenTestSet) -> dict:
    """Check a submission against the hidden test set and score it (all problems are reported at once).

    Returns ``{"metrics": {...}, "n_images", "ids", "cms"}`` with per-image confusion matrices.
    """
    files = _submission_files(submission)
    wanted = set(test_set.ids)
    problems = []
    missing = [i for i in test_set.ids if i not in files]
    extra = sorted(set(files) - wanted)
    if missing:
        problems.append(f"{len(missing)} of {len(test_set.ids)} test images have no prediction, "
                        f"e.g. {', '.join(m + '.png' for m in missing[:3])}")
    if extra:
        problems.append(f"{len(extra)} files are not test images, e.g. {', '.join(e + '.png' for e in extra[:3])}")
    cms = []
    for image_id in test_set.ids:
        if image_id not in files:
            continue
        gt = test_set.label(image_id)
        try:
            pred = _read_prediction(f"{image_id}.png", files[image_id], gt.shape, test_set.num_classes)
        except SubmissionError as exc:
            problems.append(str(exc))
            continue
        cms.append(metrics.confusion_matrix(pred, gt, test_set.num_classes))
    if problems:
        raise SubmissionError(f"submission {submission} refused:\n  " + "\n  ".join(problems[:20]))
    cms = np.stack(cms)
    s = metrics.scores(metrics.aggregate(cms))
    result = {k: s[k] for k in ("overall_acc", "mean_acc", "mean_iou")}
    result["per_class_iou"] = {c: float(v) for c, v in zip(LIP_CLASSES, s["per_class_iou"])}
    return {"metrics": result, "n_images": len(cms), "ids": list(test_set.ids), "cms": cms}


@dataclass
class Leaderboard:
    """Entries in a JSON file, rewritten atomically; at most ``max_per_team`` scored submissions a team."""

    path: Path
    max_per_team: int = 5
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def entries(self) -> list[dict]:
        if not Path(self.path).exists():
            return []
        return json.loads(Path(self.path).read_text())

    def add(self, team: str, method: str, result_metrics: dict) -> dict:
        with self._lock:
            entries = self.entries()
            if sum(e["team"] == team for e in entries) >= self.max_per_team:
                raise SubmissionError(f"team {team!r} has used its {self.max_per_team} submissions")
            entry = {"team": team, "method": method, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     **{k: result_metrics[k] for k in ("overall_acc", "mean_acc", "mean_iou")}}
            entries.append(entry)
            entries.sort(key=lambda e: -e["mean_iou"])
            _write_json_atomic(Path(self.path), entries)
            return entry


def _write_json_atomic(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def make_handler(test_set: HiddenTestSet, board: Leaderboard):
    """An HTTP handler: ``POST /submit?team=T&method=M`` (body: zip), ``GET /leaderboard`` (JSON), ``GET /``."""

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body, ctype="application/json"):
            data = body if isinstance(body, bytes) else json.dumps(body, indent=1).encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt, *args):  # keep test output quiet; the leaderboard is the log
            pass

        def do_GET(self):
            url = urlparse(self.path)
            if url.path == "/leaderboard":
                return self._send(200, board.entries())
            if url.path == "/":
                rows = "".join(f"<tr><td>{i + 1}</td><td>{e['team']}</td><td>{e['method']}</td>"
                               f"<td>{100 * e['mean_iou']:.2f}</td><td>{100 * e['overall_acc']:.2f}</td></tr>"
                               for i, e in enumerate(board.entries()))
                html = (f"<html><body><h1>Human parsing benchmark ({len(test_set.ids)} hidden test images)</h1>"
                        f"<table><tr><th>#</th><th>team</th><th>method</th><th>mean IoU</th><th>pixel acc</th></tr>"
                        f"{rows}</table></body></html>")
                return self._send(200, html.encode(), "text/html")
            return self._send(404, {"error": f"no such page {url.path}"})

        def do_POST(self):
            url = urlparse(self.path)
            if url.path != "/submit":
                return self._send(404, {"error": f"no such endpoint {url.path}"})
            q = parse_qs(url.query)
            team, method = q.get("team", [""])[0], q.get("method", [""])[0]
            if not team or not method:
                return self._send(400, {"error": "give ?team=...&method=..."})
            n = int(self.headers.get("Content-Length", 0))
            if n <= 0 or n > MAX_UPLOAD_BYTES:
                return self._send(400, {"error": f"body must be a zip of 1..{MAX_UPLOAD_BYTES} bytes"})
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "submission.zip"
                path.write_bytes(self.rfile.read(n))
                try:
                    result = score_submission(path, test_set)
                    entry = board.add(team, method, result["metrics"])
                except SubmissionError as exc:
                    return self._send(422, {"error": str(exc)})
            return self._send(200, {"entry": entry, "metrics": result["metrics"]})

    return Handler


def serve(test_set: HiddenTestSet, board: Leaderboard, host="127.0.0.1", port=8000) -> ThreadingHTTPServer:
    """Start the server (returns it; call ``serve_forever`` or run it in a thread)."""
    return ThreadingHTTPServer((host, port), make_handler(test_set, board))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="lipstudy serve", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="benchmark root (LIP layout)")
    ap.add_argument("--labels", help="hidden label folder (default: DATA/server/test_segmentations)")
    ap.add_argument("--score", help="score this submission (folder or zip) once and print JSON")
    ap.add_argument("--leaderboard", default="results/server/leaderboard.json")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--max-per-team", type=int, default=5)
    args = ap.parse_args(argv)
    try:
        test_set = HiddenTestSet.from_root(args.data, args.labels)
        if args.score:
            result = score_submission(args.score, test_set)
            print(json.dumps({"n_images": result["n_images"], **result["metrics"]}, indent=1))
            return 0
    except (FileNotFoundError, SubmissionError) as exc:
        print(f"lipstudy serve: {exc}")
        return 1
    server = serve(test_set, Leaderboard(Path(args.leaderboard), args.max_per_team), args.host, args.port)
    print(f"serving {len(test_set.ids)} hidden test images on http://{args.host}:{server.server_port}/")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
