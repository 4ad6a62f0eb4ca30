"""The evaluation server: hidden labels, submission checks, scoring, leaderboard, HTTP."""
import io
import json
import threading
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest
from PIL import Image

from lipstudy import metrics
from lipstudy.server import HiddenTestSet, Leaderboard, SubmissionError, main, score_submission, serve


def _png(arr, mode="L") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode if mode != "RGB" else None).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def bench(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "bench"
    (root / "server" / "test_segmentations").mkdir(parents=True)
    (root / "Testing_images").mkdir()
    labels = {}
    for k, (h, w) in enumerate([(6, 5), (4, 7), (5, 5)]):
        lab = rng.integers(0, 20, (h, w)).astype(np.uint8)
        labels[f"img{k}"] = lab
        (root / "server" / "test_segmentations" / f"img{k}.png").write_bytes(_png(lab))
    (root / "Testing_images" / "test_id.txt").write_text("img0\nimg1\nimg2\n")
    return root, labels


def _zip(path, preds: dict):
    with zipfile.ZipFile(path, "w") as z:
        for k, v in preds.items():
            z.writestr(f"preds/{k}.png", v if isinstance(v, bytes) else _png(v))
    return path


def test_perfect_and_known_scores(bench, tmp_path):
    root, labels = bench
    ts = HiddenTestSet.from_root(root)
    perfect = score_submission(_zip(tmp_path / "p.zip", labels), ts)
    assert perfect["metrics"]["mean_iou"] == 1.0 and perfect["n_images"] == 3
    # all-background predictions: the score equals metrics on the same arrays
    zeros = {k: np.zeros_like(v) for k, v in labels.items()}
    res = score_submission(_zip(tmp_path / "z.zip", zeros), ts)
    cm = sum(metrics.confusion_matrix(zeros[k], labels[k], 20) for k in labels)
    assert res["metrics"]["mean_iou"] == pytest.approx(metrics.scores(cm)["mean_iou"])
    # a folder works like a zip
    folder = tmp_path / "folder"
    folder.mkdir()
    for k, v in labels.items():
        (folder / f"{k}.png").write_bytes(_png(v))
    assert score_submission(folder, ts)["metrics"]["overall_acc"] == 1.0


def test_bad_submissions_name_every_problem(bench, tmp_path):
    root, labels = bench
    ts = HiddenTestSet.from_root(root)
    bad = {
        "img0": np.zeros((3, 3), np.uint8),                       # wrong size
        "img1": np.full(labels["img1"].shape, 25, np.uint8),        # not class ids
        "stray": np.zeros((2, 2), np.uint8),                        # not a test image
    }                                                               # img2 missing
    with pytest.raises(SubmissionError) as err:
        score_submission(_zip(tmp_path / "b.zip", bad), ts)
    msg = str(err.value)
    assert "img2.png" in msg and "stray.png" in msg
    assert "img0.png: size 3x3 but the image is 5x6" in msg
    assert "img1.png: values [25]" in msg
    rgb = {k: np.stack([v] * 3, -1) for k, v in labels.items()}
    with pytest.raises(SubmissionError, match="mode RGB"):
        score_submission(_zip(tmp_path / "rgb.zip", {k: _png(v, "RGB") for k, v in rgb.items()}), ts)
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(SubmissionError, match="not a zip"):
        score_submission(tmp_path / "junk.zip", ts)
    with pytest.raises(FileNotFoundError, match="hidden test labels"):
        HiddenTestSet.from_root(tmp_path / "nowhere")


def test_leaderboard_orders_and_limits(tmp_path):
    board = Leaderboard(tmp_path / "lb.json", max_per_team=1)
    board.add("a", "m1", {"overall_acc": 0.5, "mean_acc": 0.3, "mean_iou": 0.2})
    board.add("b", "m2", {"overall_acc": 0.6, "mean_acc": 0.4, "mean_iou": 0.3})
    assert [e["team"] for e in board.entries()] == ["b", "a"]
    with pytest.raises(SubmissionError, match="used its 1"):
        board.add("a", "m3", {"overall_acc": 0.9, "mean_acc": 0.9, "mean_iou": 0.9})


def test_http_round_trip_never_serves_labels(bench, tmp_path):
    root, labels = bench
    server = serve(HiddenTestSet.from_root(root), Leaderboard(tmp_path / "lb.json"), port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        body = _zip(tmp_path / "s.zip", labels).read_bytes()
        req = urllib.request.Request(f"{base}/submit?team=t&method=perfect", data=body, method="POST")
        reply = json.loads(urllib.request.urlopen(req, timeout=10).read())
        assert reply["metrics"]["mean_iou"] == 1.0
        board = json.loads(urllib.request.urlopen(f"{base}/leaderboard", timeout=10).read())
        assert board[0]["method"] == "perfect"
        assert b"perfect" in urllib.request.urlopen(base + "/", timeout=10).read()
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/server/test_segmentations/img0.png", timeout=10)
        assert err.value.code == 404
        bad = urllib.request.Request(f"{base}/submit?team=t&method=x", data=b"junk", method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(bad, timeout=10)
        assert err.value.code == 422
    finally:
        server.shutdown()
        server.server_close()


def test_cli_score(bench, tmp_path, capsys):
    root, labels = bench
    assert main(["--data", str(root), "--score", str(_zip(tmp_path / "p.zip", labels))]) == 0
    assert json.loads(capsys.readouterr().out)["mean_iou"] == 1.0
    assert main(["--data", str(root), "--score", str(tmp_path / "missing.zip")]) == 1
