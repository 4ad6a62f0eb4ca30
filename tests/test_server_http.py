"""The evaluation server over HTTP, in-process on loopback: every attack of issue 11 gets a clear 4xx
answer (or a closed connection, for clients that stop talking) and the server answers the next request.
Raw sockets send what no well-behaved client would; every wait is bounded by a socket timeout."""
import errno
import logging
import os
import re
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from PIL import Image

from lipstudy.server import HiddenTestSet, RunningServer, Settings, Store, create_app
from server_attacks import (RawEntry, bomb_zip, connect, length_and_chunked, malformed_requests, many_headers,
                            one_long_header, raw_zip, read_all, request, server_connections,
                            stalled_readers, submit, upgrade_requests, wait_until, write_hidden_set, zip_of)

FAST = dict(header_timeout_s=1.0, body_idle_timeout_s=1.0, upload_wait_s=0.5)


@pytest.fixture
def bench(tmp_path):
    root = tmp_path / "bench"
    labels = write_hidden_set(root, [(6, 5), (4, 7), (5, 5)])
    store = Store(tmp_path / "server.db")
    _, token = store.add_team("team A")
    return root, labels, store, token


@pytest.fixture
def serve(bench):
    """``serve(**settings)`` starts the server; it is stopped after the test."""
    root, _, store, _ = bench
    running = []

    def start(**kw):
        settings = Settings(**{**FAST, **kw})
        srv = RunningServer(create_app(HiddenTestSet.from_root(root), store, settings), settings).__enter__()
        running.append(srv)
        return srv

    yield start
    for srv in running:
        srv.__exit__(None, None, None)


def raw(srv, data: bytes, shutdown: bool = False, timeout: float = 10) -> bytes:
    """Send raw bytes; return everything received until the server closes (or ``timeout``)."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=timeout) as s:
        try:
            s.sendall(data)
            if shutdown:
                s.shutdown(socket.SHUT_WR)
        except OSError:  # the server may answer and close before taking everything
            pass
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return out


def alive(srv) -> bool:
    return request(srv.url + "/leaderboard", timeout=10)[0] == 200


def head(token=None, length=None, extra=b"", path=b"/submit?method=m") -> bytes:
    lines = [b"POST " + path + b" HTTP/1.1", b"Host: 127.0.0.1"]
    if token:
        lines.append(b"Authorization: Bearer " + token.encode())
    if length is not None:
        lines.append(b"Content-Length: " + str(length).encode())
    return b"\r\n".join(lines) + b"\r\n" + extra + b"\r\n"


def test_round_trip_and_what_is_revealed(bench, serve):
    root, labels, store, token = bench
    srv = serve()
    status, reply = submit(srv.url, zip_of(labels), token, method="perfect")
    assert status == 200 and reply["mean_iou"] == 1.0 and reply["n_images"] == 3
    assert reply["per_class_iou"].startswith("withheld: the hidden test set has 3 images, fewer than 500")
    # The id a team is told is random (issue 24: a global counter told each team how busy the others were).
    assert store.submissions()[-1]["public_id"] == reply["submission"] and len(reply["submission"]) == 16
    assert not isinstance(reply["submission"], int)
    status, board = request(srv.url + "/leaderboard")
    assert status == 200 and board[0]["method"] == "perfect" and board[0]["team"] == "team A"
    assert request(srv.url + "/server/test_segmentations/img0.png")[0] == 404
    assert request(srv.url + "/submit")[0] == 405
    status, reply = submit(srv.url, b"junk", token)
    assert status == 422 and reply["problems"] == ["not a zip file (4 bytes)"]
    # Scores are rounded to 0.01 percentage points: an all-background answer.
    zeros = {k: np.zeros_like(v) for k, v in labels.items()}
    reply = submit(srv.url, zip_of(zeros), token)[1]
    assert reply["mean_iou"] == round(reply["mean_iou"], 4) and 0 < reply["overall_acc"] < 0.2


def test_per_class_iou_only_for_a_large_test_set(bench, serve):
    _, labels, _, token = bench
    reply = submit(serve(per_class_min_images=3).url, zip_of(labels), token)[1]
    assert reply["per_class_iou"]["hat"] == 1.0 and len(reply["per_class_iou"]) == 20


def test_a_broken_hidden_label_is_the_servers_error(bench, serve):
    root, labels, store, token = bench
    srv = serve()
    rgb = np.stack([labels["img2"] * 10] * 3, -1)  # a colour-coded label, where ids belong
    Image.fromarray(rgb, "RGB").save(root / "server" / "test_segmentations" / "img2.png")
    status, reply = submit(srv.url, zip_of(labels), token)
    assert status == 500 and "hidden labels" in reply["error"]
    assert store.submissions() == []  # not held against the team
    assert alive(srv)


def test_authentication_comes_before_the_body(bench, serve):
    _, labels, _, token = bench
    srv = serve()
    assert submit(srv.url, zip_of(labels), None)[0] == 401
    status, reply = submit(srv.url, zip_of(labels), token[:-1] + "x")
    assert status == 401 and reply["error"] == "unknown token"
    # Headers promising 400 kB and no body at all: the 401 comes anyway (nothing waits for the body).
    out = raw(srv, head("wrong", 400_000), timeout=10)
    assert out.startswith(b"HTTP/1.1 401") and b"unknown token" in out
    assert alive(srv)


def test_malformed_headers(bench, serve):
    _, labels, _, token = bench
    srv = serve(max_upload_bytes=100_000)
    # Non-numeric Content-Length: uvicorn's HTTP parser answers 400 (the connection is closed).
    out = raw(srv, head(token, extra=b"Content-Length: 12abc\r\n") + b"x" * 20)
    assert out.startswith(b"HTTP/1.1 400")
    assert alive(srv)
    out = raw(srv, head(token, 10 ** 15))  # declared too large: 413 before reading
    assert out.startswith(b"HTTP/1.1 413") and b"above the 100000-byte limit" in out
    out = raw(srv, head(token))  # neither Content-Length nor chunked
    assert out.startswith(b"HTTP/1.1 411")
    out = raw(srv, b"POST /submit HTTP/1.1\r\nX-Big: " + b"a" * 20_000)  # a header section past 16 KiB
    assert out.startswith(b"HTTP/1.1 431") and b"above the 16384 bytes allowed" in out
    # A chunked body passing the cap: 413 as soon as it is passed.
    chunk = b"%x\r\n" % 65536 + b"\0" * 65536 + b"\r\n"
    out = raw(srv, head(token, extra=b"Transfer-Encoding: chunked\r\n") + chunk * 3)
    assert out.startswith(b"HTTP/1.1 413") and b"body passed the 100000-byte limit" in out
    status, reply = submit(srv.url, b"", token)
    assert status == 400 and "empty body" in reply["error"]
    auth = {"Authorization": f"Bearer {token}"}
    status, reply = request(srv.url + "/submit?method=%E2%80%8B", "POST", b"x", auth)
    assert status == 400 and "method name contains control or invisible characters (U+200B)" in reply["error"]
    status, reply = request(srv.url + "/submit?method=" + "x" * 60_000, "POST", b"x", auth)
    assert status == 431  # the request line is part of the header section, past 16 KiB
    assert alive(srv)


def test_short_bodies_are_never_scored(bench, serve):
    _, labels, store, token = bench
    srv = serve()
    body = zip_of(labels)
    before = len(store.submissions())
    # The client closes after half the body: nothing is scored.
    out = raw(srv, head(token, len(body)) + body[: len(body) // 2], shutdown=True)
    assert b"200 OK" not in out
    assert wait_until(lambda: len(store.submissions()) == before + 1, timeout=10)  # the server saw it go
    # The client stops sending and waits: 408 after the body's idle timeout.
    out = raw(srv, head(token, len(body)) + body[: len(body) // 2], timeout=10)
    assert out.startswith(b"HTTP/1.1 408") and b"no data for 1 s" in out and b"not received in time" in out
    # Both were attempts that held an upload slot: recorded as refused, so they count against the day's.
    rows = store.submissions()[before:]
    assert {r["status"] for r in rows} == {"refused"}
    messages = sorted(r["message"] for r in rows)
    assert messages[0].startswith("client disconnected after ")  # (uvicorn drops what came with the EOF)
    assert messages[1].startswith(f"no data for 1 s: {len(body) // 2} bytes arrived")
    assert alive(srv)


def test_slow_clients_are_disconnected(bench, serve):
    srv = serve()
    for data in (b"", b"GET /leaderboard HTTP/1.1\r\nHost: x\r\n"):  # nothing; headers never finished
        assert raw(srv, data, timeout=10) == b""  # closed by the server (a 10 s socket timeout would raise)
    # A kept-alive connection that goes quiet after an answer is closed too.
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET /leaderboard HTTP/1.1\r\nHost: x\r\n\r\nGET /lead")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and data.count(b"HTTP/1.1") == 1
    assert alive(srv)


def test_upload_slots_are_bounded(bench, serve):
    _, labels, store, token = bench
    _, other = store.add_team("team B")
    srv = serve(max_uploads=1, body_idle_timeout_s=5.0)
    body = zip_of(labels)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as hog:
        hog.sendall(head(token, len(body)) + body[:10])  # takes the only upload slot and keeps it
        assert wait_until(lambda: srv.app.state.submissions.uploads.value == 0, timeout=10)
        status, reply = submit(srv.url, body, other)
        assert status == 503 and "busy" in reply["error"]
        hog.sendall(body[10:])
        assert hog.recv(65536).startswith(b"HTTP/1.1 200")
    assert submit(srv.url, body, token)[0] == 200


def test_zip_attacks_over_http(bench, serve):
    _, labels, _, token = bench
    # The default upload cap of this 3-image set (~0.7 MB) refuses a 4.7 MB bomb before reading it,
    # and a client that writes its whole body before reading gets that answer, not a reset.
    status, reply = submit(serve().url, bomb_zip(["img0.png"], 1536 * 2 ** 20) * 3, token)
    assert status == 413 and "above the" in reply["error"]
    srv = serve(max_upload_bytes=8 * 2 ** 20)  # let the bomb in, to meet the zip checks
    names = ["img0.png", "img1.png", "img2.png"]
    status, reply = submit(srv.url, bomb_zip(names, 1536 * 2 ** 20), token)
    assert status == 422 and reply["problems"][0].startswith('"img0.png": declares 1610612736 bytes')
    corrupt = raw_zip([RawEntry(n, b"\xff" * 40, file_size=60) for n in names])
    status, reply = submit(srv.url, corrupt, token)
    assert status == 422 and reply["problems"][0].startswith('"img0.png": corrupt zip entry')
    for method, what in ((9, "deflate64"), (0, None)):
        entries = [RawEntry(n, b"\0" * 60, method=method, flags=0 if what else 1, file_size=60) for n in names]
        status, reply = submit(srv.url, raw_zip(entries), token)
        assert status == 422 and (what or "encrypted") in reply["problems"][0]
    assert alive(srv)


def test_quota_is_answered_before_the_body(bench, serve):
    _, labels, _, token = bench
    srv = serve(daily_quota=1)
    assert submit(srv.url, zip_of(labels), token)[0] == 200
    out = raw(srv, head(token, 50_000))  # no body sent
    assert out.startswith(b"HTTP/1.1 429") and b"used its 1 scored submissions" in out and b"retry-after" in out


def test_leaderboard_page_escapes_names_and_sets_a_strict_csp(bench, serve):
    _, labels, store, _ = bench
    _, token = store.add_team("<script>document.title='pwned'</script>")
    srv = serve()
    method = "<img src=x onerror=alert(1)>"
    assert submit(srv.url, zip_of(labels), token, method=quote(method))[0] == 200
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    headers, _, page = data.decode().partition("\r\n\r\n")
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<script" not in page and "<img" not in page
    csp = next(h for h in headers.splitlines() if h.lower().startswith("content-security-policy"))
    assert "default-src 'none'" in csp and "script-src 'none'" in csp and "unsafe-inline" not in csp


def _answer(sock, timeout: float) -> bytes:
    """The answer on ``sock`` (headers and the Content-Length bytes of body) if it begins within
    ``timeout`` seconds; b"" if nothing came."""
    sock.settimeout(timeout)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
            head, sep, body = out.partition(b"\r\n\r\n")
            length = re.search(rb"content-length: (\d+)", head.lower())
            if sep and length and len(body) >= int(length.group(1)):
                break
            sock.settimeout(10)  # the rest of an answer that has begun
    except (socket.timeout, ConnectionResetError):
        pass
    return out


def test_one_team_cannot_hold_every_upload_slot(bench, serve):
    """Issue 24: eight connections of one team, each trickling its body, held every upload slot and
    another team got 503. One submission of a team at a time: its second is refused at once."""
    _, labels, store, token = bench
    _, other = store.add_team("team B")
    srv = serve(max_uploads=2, body_idle_timeout_s=5.0)
    body = zip_of(labels)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as first, \
            socket.create_connection(("127.0.0.1", srv.port), timeout=10) as second:
        first.sendall(head(token, len(body)) + body[:10])
        assert wait_until(lambda: srv.app.state.submissions.uploads.value == 1, timeout=10)
        second.sendall(head(token, len(body)) + body[:10])
        out = _answer(second, 5)
        assert out.startswith(b"HTTP/1.1 429") and b"already has 1 submission(s) in progress" in out, out[:200]
        status, reply = submit(srv.url, body, other, timeout=10)  # the other team still gets a slot
        assert status == 200 and reply["mean_iou"] == 1.0
        first.sendall(body[10:])
        assert _answer(first, 10).startswith(b"HTTP/1.1 200")
    assert submit(srv.url, body, token)[0] == 200


def test_a_trickled_body_loses_its_slot_and_an_attempt(bench, serve):
    """Issue 24: only the pause between chunks was timed, so a byte every few seconds kept a slot for
    the whole 600 s. After a grace period a body must average a minimum rate."""
    _, labels, store, token = bench
    srv = serve(min_upload_rate=2000, upload_grace_s=1.0, body_idle_timeout_s=2.0, body_timeout_s=60.0)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(head(token, 100_000))
        out = b""
        for _ in range(40):  # a byte every 0.2 s: 5 bytes/s, at most 8 s
            try:
                s.sendall(b"x")
            except OSError:
                pass
            if out := _answer(s, 0.2):
                break
    assert out.startswith(b"HTTP/1.1 408") and b"slower than 2000 bytes/s (after the first 1 s)" in out, out[:300]
    assert store.usage(store.team_for_token(token))["attempts"] == 1  # it cost the team an attempt
    assert store.submissions()[-1]["status"] == "refused"
    assert submit(srv.url, zip_of(labels), token)[0] == 200  # an honest upload is fast enough


def test_the_attempt_cap_holds_against_concurrent_submissions(bench, serve):
    """Issue 24: the attempt cap was checked outside the transaction that records, so concurrent
    refused submissions were all stored past it. With one team allowed 20 submissions at once (the
    per-team limit would otherwise serialise them), 20 at once against a cap of 5 store 5."""
    import threading

    _, _, store, token = bench
    srv = serve(daily_attempts=5, uploads_per_team=20, max_uploads=20)
    start, statuses = threading.Barrier(20), []

    def one():
        start.wait(10)
        statuses.append(submit(srv.url, b"junk", token, timeout=30)[0])

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(store.submissions()) == 5
    assert sorted(statuses) == [422] * 5 + [429] * 15


def test_uvicorns_own_answers_carry_the_security_headers(bench, serve):
    srv = serve(limit_concurrency=2)
    out = raw(srv, b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n")  # h11 cannot parse it: uvicorn's 400
    headers, _, body = out.partition(b"\r\n\r\n")
    assert headers.startswith(b"HTTP/1.1 400") and b"content-security-policy: default-src 'none'" in headers
    assert b"x-content-type-options: nosniff" in headers and b"malformed HTTP request" in body
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10):  # one open connection of two
        out = raw(srv, b"GET /leaderboard HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 503") and b"content-security-policy: default-src 'none'" in out
    assert alive(srv)


def test_one_address_cannot_hold_every_connection(bench, serve):
    """Idle connections need no token; one address may keep at most ``max_connections_per_address``."""
    srv = serve(max_connections_per_address=3, header_timeout_s=10.0)
    idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=10) for _ in range(3)]
    try:
        out = raw(srv, b"GET /leaderboard HTTP/1.1\r\nHost: x\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 503") and b"more than 3 open connections from 127.0.0.1" in out
        assert b"content-security-policy" in out
    finally:
        for s in idle:
            s.close()
    assert wait_until(lambda: alive(srv), timeout=10)


def test_upload_files_left_by_a_killed_server_are_removed_at_start(bench, tmp_path):
    root, labels, store, token = bench
    folder = tmp_path / "uploads"
    folder.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = folder / f"lipstudy-upload-{gone.pid}-x1y2z3.zip"
    live = folder / f"lipstudy-upload-{os.getpid()}-a1b2c3.zip"  # another server's upload in progress
    other = folder / "notes.zip"
    for p in (stale, live, other):
        p.write_bytes(b"PK")
    settings = Settings(upload_dir=str(folder))
    app = create_app(HiddenTestSet.from_root(root), store, settings)
    assert not stale.exists() and live.exists() and other.exists()
    with RunningServer(app, settings) as srv:
        assert submit(srv.url, zip_of(labels), token)[0] == 200
    assert sorted(p.name for p in folder.iterdir()) == sorted([live.name, other.name])


# ---------------------------------------------------------------------------------------------
# issue 41: a third red-team round


@pytest.mark.parametrize("send_buffer", [None, 0])
def test_clients_that_never_read_their_answers_are_dropped(bench, serve, send_buffer):
    """Thousands of pipelined ``GET /`` never read kept connections ESTABLISHED for good, each with
    megabytes of kernel memory: the header timer was stopped by the first request and nothing timed an
    answer waiting for its client. Now an answer waits at most ``write_timeout_s`` (10 s by default),
    also where the kernel's send buffer is left to grow (0): it then takes every answer, the server
    closes the idle connection, and the kernel's retries of the unread answers have the same deadline."""
    srv = serve() if send_buffer is None else serve(send_buffer_bytes=send_buffer)
    if server_connections(srv.port) is None:
        pytest.skip("the kernel's connections are read from /proc/net/tcp (Linux)")
    start = time.monotonic()
    stalled = stalled_readers(srv.url, 3, requests_each=3000)
    try:
        assert server_connections(srv.port) == 3
        # None left on the server's side: not established, no bytes queued (the clients' unread bytes
        # are theirs).
        assert wait_until(lambda: server_connections(srv.port) == 0, timeout=30, step=0.2)
        took = time.monotonic() - start
        assert took < Settings().write_timeout_s + 10, took  # within seconds of the timeout
    finally:
        for s in stalled:
            s.close()
    assert alive(srv)


def test_protocol_errors_are_logged_at_a_bounded_rate(bench, serve):
    """One client's malformed requests grew the log by 130-160 KiB/s, and pipelined upgrade requests
    logged two warnings each. Now one record an address a minute (10 in all), whatever the rate."""
    srv = serve()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    loggers = [logging.getLogger(n) for n in ("uvicorn.error", "uvicorn", "lipstudy.server")]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        for data in malformed_requests(200):  # one connection each: 400 and closed
            assert raw(srv, data).startswith(b"HTTP/1.1 400")
        with connect(srv.url) as s:
            s.sendall(upgrade_requests(300) + b"GET /leaderboard HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            out, closed = read_all(s, timeout=20)
        assert out.count(b"HTTP/1.1 200") == 301 and closed  # every request was handled
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
    assert len(records) == 1, [r.getMessage()[:100] for r in records[:5]]
    assert records[0].getMessage().startswith("127.0.0.1: Invalid HTTP request received")
    assert alive(srv)


def test_a_header_section_is_bounded_however_it_arrives(bench, serve):
    """h11 bounded a header section only while it was incomplete after a read: 10,000 headers (99 KB),
    or one 100 KiB header, in one read got 200."""
    srv = serve()
    for data in (many_headers(10_000), one_long_header(100 * 1024), one_long_header(17 * 1024)):
        with connect(srv.url) as s:
            s.sendall(data)
            out, closed = read_all(s)
        assert out.startswith(b"HTTP/1.1 431") and b"above the 16384 bytes allowed" in out, out[:200]
        assert closed
    # Just within the limit: answered.
    fits = one_long_header(16 * 1024 - 200)
    assert len(fits) <= 16 * 1024
    with connect(srv.url) as s:
        s.sendall(fits)
        assert read_all(s)[0].startswith(b"HTTP/1.1 200")
    assert alive(srv)


def test_content_length_with_transfer_encoding_is_refused_and_closed(bench, serve):
    """RFC 9112 section 6.3: a request framed both ways must not leave the connection open; the second
    request pipelined behind it (a smuggled one, for a proxy framing by length) is never answered."""
    _, _, _, token = bench
    srv = serve()
    for data in (length_and_chunked(), length_and_chunked(b"/submit?method=m")):
        with connect(srv.url) as s:
            s.sendall(data)
            out, closed = read_all(s)
        assert out.startswith(b"HTTP/1.1 400") and b"both Content-Length and Transfer-Encoding" in out, out[:300]
        assert out.count(b"HTTP/1.1 ") == 1 and closed
    assert alive(srv)


def test_a_token_replaced_during_the_upload_stops_it(bench, serve):
    """Issue 41: the token was checked only when the headers arrived, so a replaced token's upload in
    flight (up to the 600 s body timeout) was still scored and recorded."""
    _, labels, store, token = bench
    srv = serve()
    body = zip_of(labels)
    with connect(srv.url) as s:
        s.sendall(head(token, len(body)) + body[:10])
        assert wait_until(lambda: srv.app.state.submissions.uploads.value == Settings().max_uploads - 1, timeout=10)
        new = store.new_token("team A")
        s.sendall(body[10:])
        out = _answer(s, 10)
    assert out.startswith(b"HTTP/1.1 401") and b"token was replaced while the submission was uploading" in out
    assert store.submissions() == []  # neither scored nor held against the team
    assert submit(srv.url, body, token)[0] == 401 and submit(srv.url, body, new)[0] == 200


def test_uploads_go_to_a_private_folder_beside_the_database(bench, serve):
    """Issue 41: the default upload folder was the shared /tmp, where other users can squat names."""
    _, labels, store, token = bench
    srv = serve()
    folder = store.path.parent / "uploads"
    assert folder.is_dir() and stat.S_IMODE(folder.stat().st_mode) == 0o700
    body = zip_of(labels)
    with connect(srv.url) as s:
        s.sendall(head(token, len(body)) + body[:10])
        assert wait_until(lambda: len(list(folder.iterdir())) == 1, timeout=10)
        (upload,) = folder.iterdir()
        assert upload.name.startswith(f"lipstudy-upload-{os.getpid()}-")
        assert stat.S_IMODE(upload.stat().st_mode) == 0o600
        s.sendall(body[10:])
        assert _answer(s, 10).startswith(b"HTTP/1.1 200")
    assert list(folder.iterdir()) == []


def test_files_the_start_up_sweep_cannot_remove_do_not_stop_the_server(bench, tmp_path, monkeypatch):
    """Issue 41: in a shared sticky folder (/tmp) another user's file named like a stale upload made the
    start-up sweep raise PermissionError, and the server never started. It is skipped now, and files
    of other users are never touched at all."""
    root, labels, store, token = bench
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    squatted = shared / f"lipstudy-upload-{gone.pid}-squat1.zip"
    stale = shared / f"lipstudy-upload-{gone.pid}-stale1.zip"
    for p in (squatted, stale):
        p.write_bytes(b"PK")
    unlink = os.unlink

    def sticky_unlink(path, *args, **kwargs):  # what the sticky bit does to another user's file
        if Path(path).name == squatted.name:
            raise PermissionError(errno.EPERM, "Operation not permitted", str(path))
        return unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", sticky_unlink)
    settings = Settings(**FAST, upload_dir=str(shared))
    app = create_app(HiddenTestSet.from_root(root), store, settings)
    assert squatted.exists() and not stale.exists()
    with RunningServer(app, settings) as srv:
        assert submit(srv.url, zip_of(labels), token)[0] == 200
    monkeypatch.setattr(os, "unlink", unlink)
    if os.geteuid() == 0:  # root can make a file of another user: the sweep leaves it alone
        other = shared / f"lipstudy-upload-{gone.pid}-other1.zip"
        other.write_bytes(b"PK")
        os.chown(other, 65534, 65534)
        create_app(HiddenTestSet.from_root(root), store, settings)
        assert other.exists()


def test_the_default_upload_folder_is_made_private_or_refused(bench, tmp_path):
    """An existing uploads/ beside the database loses group and other access; one of another user is
    refused with a sentence naming it, and `lipstudy serve` says so instead of a traceback."""
    from lipstudy.server import main

    root, _, store, _ = bench
    folder = store.path.parent / "uploads"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    create_app(HiddenTestSet.from_root(root), store, Settings(**FAST))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    if os.geteuid() != 0:
        pytest.skip("making a folder of another user needs root")
    os.chown(folder, 65534, 65534)
    with pytest.raises(PermissionError, match="the upload folder belongs to another user"):
        create_app(HiddenTestSet.from_root(root), store, Settings(**FAST))
    assert main(["--data", str(root), "--db", str(store.path), "--port", "0"]) == 1
