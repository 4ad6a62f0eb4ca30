"""Evaluation server under attack: for each attack of issues 11, 24 and 41, a fresh `lipstudy serve`
subprocess, its peak resident memory (Linux VmHWM), what the kernel holds for its connections (peak and
after the attack: connections, bytes queued, the machine's TCP memory), how a legitimate client fared
meanwhile (a `GET /leaderboard` every 0.25 s: latencies, failures), how much its log grew, and the
answer. Writes results/benchmarks/server_memory.json, beside the figures the issues reported.

    python benchmarks/server_memory.py [--big-mib 512] [--slow 100] [--zip64-records 1300000]
                                       [--stalled 30] [--flood-s 20] [--before FILE --before-label TEXT]

``--before`` embeds the rows of an earlier run (e.g. of the code before a fix, run with ``PYTHONPATH``
at an export of that commit's package) in the result.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from _common import REPO, device_info, write_result

sys.path.insert(0, str(REPO / "tests"))  # the attack kit lives with the tests

from lipstudy.server import Store  # noqa: E402
from server_attacks import (KernelSampler, Probe, RawEntry, ServerProcess, bomb_zip, connect,  # noqa: E402
                            deflate, length_and_chunked, malformed_request, many_headers, one_long_header, png,
                            png_declaring, png_with_chunks, raw_zip, read_all, server_connections, stalled_readers,
                            submit, text_bombs, upgrade_requests, wait_until, write_hidden_set, zip64_directory,
                            zip_of)

REPORTED_BEFORE = {  # issue 11, the http.server version
    "one 1.5 GB entry (1.5 MB upload)": "3.1 GB",
    "two 1.5 GB entries": "over 4 GB",
    "twelve 13000x13000 PNGs in a 6 KB zip": "527 MB and 16 s of CPU",
    "512 MiB upload": "560 MB",
}
REPORTED_IN_ISSUE_24 = {  # the Starlette version of issue 11, attacked again
    "zip64 directory of 0.5M records (64 MiB cap)": "289 MB",
    "zip64 directory of 1.3M records (64 MiB cap)": "668 MB and 3-9 s of CPU, not returned",
    "74 kB PNG with zTXt/iTXt/iCCP chunks": "64 MB to decode",
    "8 connections of one team trickling a byte every 4 s": "every upload slot for 600 s; another team 503 after 30 s",
    # The same attacks as this script's, against commit 1e251f8 (before the fix) on the machine of the
    # result file: the zip64 directory was parsed (and then crashed on the empty names: a 500).
    "zip64 directory of 1300000 records, 1e251f8 re-measured": "peak 518 MiB (idle 48), answered 500 after 27 s",
    "twelve PNGs with 64 zTXt chunks of 1 MiB each, 1e251f8 re-measured": "peak 117 MiB (idle 48), scored in 5.8 s",
}
REPORTED_IN_ISSUE_41 = {  # the server of issue 24, attacked a third time
    "a connection pipelining a few thousand GET / and never reading": "ESTABLISHED long after the header and "
                                                                      "keep-alive timeouts, about 3.9 MiB of "
                                                                      "kernel socket memory each",
    "malformed requests, one at a time": "stderr grew 130-160 KiB/s (more than 10 GiB a day)",
    "pipelined Upgrade: websocket on one connection": "two warnings a request, over 2,000 requests/s",
    "10,000 headers (99 KB) or one 100 KiB header in one read": "200",
    "Content-Length with Transfer-Encoding": "answered, connection kept open for a pipelined second request",
    "token replaced mid-upload": "the upload still scored and recorded",
    "database file": "mode 0644",
}


def stream_upload(url: str, token: str, nbytes: int, chunk: int = 2 ** 20):
    """POST ``nbytes`` (zeros after a zip signature) without holding them in memory; (status, seconds)."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    t0 = time.perf_counter()
    conn.putrequest("POST", "/submit?method=big")
    conn.putheader("Authorization", f"Bearer {token}")
    conn.putheader("Content-Length", str(nbytes))
    conn.endheaders()
    sent, block = 0, bytes(chunk)
    while sent < nbytes:
        n = min(chunk, nbytes - sent)
        conn.send(block[:n])
        sent += n
    status = conn.getresponse().status
    conn.close()
    return status, time.perf_counter() - t0


def trickle(url: str, token: str, n: int, every_s: float = 4.0, limit_s: float = 120.0):
    """``n`` uploads of one team declaring 64 MiB and sending a byte every ``every_s`` seconds; the
    status each one is answered with (None if none within ``limit_s``)."""
    host, port = url.split("//")[1].split(":")
    socks = [socket.create_connection((host, int(port)), timeout=limit_s) for _ in range(n)]
    for s in socks:
        s.sendall(b"POST /submit?method=trickle HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode()
                  + b"\r\nContent-Length: %d\r\n\r\n" % (64 * 2 ** 20))
    statuses: list[int | None] = [None] * n
    deadline = time.monotonic() + limit_s
    while None in statuses and time.monotonic() < deadline:
        for i, s in enumerate(socks):
            if statuses[i] is not None:
                continue
            s.settimeout(every_s / n)
            try:
                line = s.recv(64)
            except socket.timeout:
                line = None
            except OSError:
                line = b""
            if line is not None:
                statuses[i] = int(line.split()[1]) if line.startswith(b"HTTP/1.1 ") else 0
                continue
            try:
                s.sendall(b"x")
            except OSError:
                statuses[i] = 0
    for s in socks:
        s.close()
    return statuses


def slow_clients(url: str, n: int, timeout: float = 60):
    """``n`` connections that send half a header section and stop; seconds until the server closed all."""
    host, port = url.split("//")[1].split(":")
    socks = [socket.create_connection((host, int(port)), timeout=timeout) for _ in range(n)]
    t0 = time.perf_counter()
    for s in socks:
        s.sendall(b"POST /submit HTTP/1.1\r\nHost: x\r\n")
    closed = 0
    for s in socks:
        try:
            closed += s.recv(1) == b""
        except OSError:
            pass
        s.close()
    return closed, time.perf_counter() - t0


def mib(nbytes: int | None) -> float | None:
    """Bytes as MiB (None where the peak is not measurable: VmHWM is Linux's)."""
    return None if nbytes is None else round(nbytes / 2 ** 20, 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--big-mib", type=int, default=512, help="size of the large upload")
    p.add_argument("--slow", type=int, default=100, help="slow connections held open at once")
    p.add_argument("--zip64-records", type=int, default=1_300_000,
                   help="directory records behind the zip64 locator (46 bytes each)")
    p.add_argument("--stalled", type=int, default=30, help="connections that pipeline GETs and never read")
    p.add_argument("--flood-s", type=float, default=20.0, help="seconds of each log flood")
    p.add_argument("--only", help="run only the attacks whose name contains one of these comma-separated texts")
    p.add_argument("--before", help="a result file of an earlier run, embedded as its rows")
    p.add_argument("--before-label", default="before", help="what the earlier run measured (e.g. a commit)")
    p.add_argument("--out", help="result file (default results/benchmarks/server_memory.json)")
    args = p.parse_args(argv)
    rows, load = [], os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        labels = write_hidden_set(tmp / "bench", [(48, 64)] * 12)
        names = [f"{k}.png" for k in labels]
        huge = png_declaring(13000, 13000)
        text_pngs = zip_of({k: png_with_chunks(png(v), text_bombs(64)) for k, v in labels.items()})
        zip64 = zip64_directory(args.zip64_records)
        # Each attack gets the tokens of eight teams (tok[0] attacks unless it says otherwise) and the
        # server's database.
        attacks = {
            "valid submission": lambda url, tok, db: submit(url, zip_of(labels), tok[0]),
            "two 1.5 GiB entries (declared)": lambda url, tok, db: submit(url, bomb_zip(names[:2], 1536 * 2 ** 20), tok[0]),
            "twelve 1.5 GiB entries declaring 100 bytes": lambda url, tok, db: submit(
                url, bomb_zip(names, 1536 * 2 ** 20, declared=100), tok[0]),
            "twelve 13000x13000 PNGs (5 KB zip)": lambda url, tok, db: submit(
                url, raw_zip([RawEntry(n, deflate(huge), file_size=len(huge)) for n in names]), tok[0]),
            f"zip64 directory of {args.zip64_records} records ({len(zip64) / 1e6:.0f} MB upload)":
                lambda url, tok, db: submit(url, zip64, tok[0], timeout=600),
            f"twelve PNGs with 64 zTXt chunks of 1 MiB each ({len(text_pngs) / 1e3:.0f} kB zip)":
                lambda url, tok, db: submit(url, text_pngs, tok[0]),
            f"{args.big_mib} MiB upload": lambda url, tok, db: stream_upload(url, tok[0], args.big_mib * 2 ** 20),
            "8 concurrent 64 MiB uploads (8 teams)": lambda url, tok, db: _concurrent(url, tok, 64 * 2 ** 20),
            "8 uploads of one team trickling a byte every 4 s": lambda url, tok, db: _trickle_and_submit(
                url, tok, labels),
            f"{args.slow} slow clients (headers never finished)": lambda url, tok, db: slow_clients(url, args.slow),
            # Issue 41.
            f"{args.stalled} connections pipelining 3000 GET / each, never reading": lambda url, tok, db: _stalled(
                url, args.stalled),
            f"malformed requests, one connection each, for {args.flood_s:g} s": lambda url, tok, db: _malformed_flood(
                url, args.flood_s),
            f"Upgrade: websocket requests pipelined on one connection for {args.flood_s:g} s":
                lambda url, tok, db: _upgrade_flood(url, args.flood_s),
            "10,000 headers in one read (20 connections)": lambda url, tok, db: _refused(url, many_headers(), 20),
            "one 100 KiB header (20 connections)": lambda url, tok, db: _refused(url, one_long_header(), 20),
            "Content-Length with Transfer-Encoding, a request pipelined behind (20 connections)":
                lambda url, tok, db: _refused(url, length_and_chunked(), 20),
            "token replaced mid-upload": lambda url, tok, db: _token_replaced(url, tok, db, labels),
        }
        if args.only:
            attacks = {k: v for k, v in attacks.items() if any(o in k for o in args.only.split(","))}
        for k, (what, attack) in enumerate(attacks.items()):
            db = tmp / f"s{k}.db"
            store = Store(db)
            tokens = [store.add_team(f"team {j}")[1] for j in range(8)]
            # The slow clients all come from 127.0.0.1: no per-address limit there, to measure the rest.
            per_address = ["--max-connections-per-address", "0"] if what.endswith("finished)") else []
            log = tmp / f"s{k}.log"
            with ServerProcess(tmp / "bench", db, "--max-upload-mb", str(args.big_mib + 64), *per_address,
                               log=log) as srv:
                port = int(srv.url.rsplit(":", 1)[1])
                idle, log_before = srv.peak_rss(), log.stat().st_size
                with KernelSampler(port) as kernel, Probe(srv.url) as probe:
                    t0 = time.perf_counter()
                    answer = attack(srv.url, tokens, db)
                    seconds = time.perf_counter() - t0
                after = kernel.sample()
                log_bytes = log.stat().st_size - log_before
                alive = submit(srv.url, zip_of(labels), tokens[-1])[0] == 200
                peak = srv.peak_rss()
            files = {"database": oct(db.stat().st_mode & 0o777),
                     "upload folder": oct((db.parent / "uploads").stat().st_mode & 0o777)
                     if (db.parent / "uploads").exists() else "none (the system's temporary folder)"}
            if what.endswith("finished)"):
                status = f"{answer[0]} of {args.slow} closed by the server"
            elif isinstance(answer, dict):
                status = answer
            else:
                status = answer[0] if not isinstance(answer, list) else sorted({a[0] for a in answer})
            rows.append({"attack": what, "answer": status,
                         "seconds": seconds, "idle_rss_mib": mib(idle), "peak_rss_mib": mib(peak),
                         "kernel_peak": {"server_connections": kernel.peak["server_connections"],
                                         "queued_mib": mib(kernel.peak["queued_bytes"]),
                                         "tcp_memory_mib": mib(kernel.peak["tcp_memory_bytes"])},
                         "kernel_after": {"server_connections": after["server_connections"],
                                          "queued_mib": mib(after["queued_bytes"]),
                                          "tcp_memory_mib": mib(after["tcp_memory_bytes"])},
                         "legitimate_client": probe.summary(), "log_bytes": log_bytes,
                         "log_bytes_per_s": round(log_bytes / seconds, 1), "file_modes": files,
                         "answers_next_request": alive})
            r = rows[-1]
            print(f"{what}: answer {r['answer']} in {seconds:.2f} s; server peak RSS {mib(peak)} MiB (idle "
                  f"{mib(idle)} MiB); kernel peak {r['kernel_peak']}, after {r['kernel_after']}; legitimate "
                  f"client {r['legitimate_client']}; log +{log_bytes} bytes; next request answered: {alive}",
                  flush=True)
    result = {**device_info(torch.device("cpu")), "load_average_1min": [load, os.getloadavg()[0]],
              "hidden_images": 12, "label_size": "48x64",
              "legitimate_client": "GET /leaderboard on a new connection every 0.25 s during the attack",
              "kernel": "from /proc/net/tcp (connections on the server's port, bytes queued on the server's "
                        "and the clients' sockets, all on this machine on loopback) and /proc/net/sockstat "
                        "(the TCP memory of this network namespace, above its value at the start)",
              "attacks": rows, "reported_before_issue_11": REPORTED_BEFORE,
              "reported_in_issue_24": REPORTED_IN_ISSUE_24, "reported_in_issue_41": REPORTED_IN_ISSUE_41}
    if args.before:
        before = json.loads(Path(args.before).read_text())
        result["before"] = {"label": args.before_label, "attacks": before["attacks"]}
    write_result("server_memory", result, args.out)
    return 0


def _concurrent(url, tokens, nbytes):
    out = [None] * len(tokens)

    def one(i):
        out[i] = stream_upload(url, tokens[i], nbytes)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(tokens))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def _trickle_and_submit(url, tokens, labels) -> dict:
    """Team 0 trickles 8 uploads; team 1 submits once they have started. The answers of both."""
    other: list = []
    helper = threading.Thread(target=lambda: (time.sleep(1), other.append(submit(url, zip_of(labels), tokens[1]))))
    helper.start()
    statuses = trickle(url, tokens[0], 8)
    helper.join()
    return {"trickling team": sorted(statuses, key=str), "other team, meanwhile": other[0][0] if other else None}


def _stalled(url: str, n: int, limit_s: float = 60) -> dict:
    """``n`` connections pipelining 3000 ``GET /`` each and never reading; how long the server held them."""
    port = int(url.rsplit(":", 1)[1])
    socks = stalled_readers(url, n, requests_each=3000)
    t0 = time.monotonic()
    held = server_connections(port)
    dropped = wait_until(lambda: server_connections(port) == 0, timeout=limit_s, step=0.1)
    took = time.monotonic() - t0
    for s in socks:
        s.close()
    return {"held at first": held, "dropped by the server": dropped,
            "seconds until dropped": round(took, 1) if dropped else f"still held after {limit_s:g} s"}


def _malformed_flood(url: str, seconds: float) -> dict:
    """Malformed requests, each on its own connection, one at a time, for ``seconds``."""
    end, n, answers = time.monotonic() + seconds, 0, set()
    while time.monotonic() < end:
        with connect(url) as s:
            s.sendall(malformed_request(n))
            answers.add(read_all(s, 5)[0][:12].decode("latin-1"))
        n += 1
    return {"requests": n, "per_s": round(n / seconds), "answers": sorted(answers)}


def _upgrade_flood(url: str, seconds: float, batch: int = 500) -> dict:
    """``Upgrade: websocket`` requests pipelined ``batch`` at a time on one connection (their answers
    read, so the client is not a stalled reader), for ``seconds``."""
    end, n = time.monotonic() + seconds, 0
    s = connect(url, timeout=30)
    try:
        while time.monotonic() < end:
            s.sendall(upgrade_requests(batch))
            got = b""
            while got.count(b"HTTP/1.1 ") < batch:
                chunk = s.recv(2 ** 20)
                if not chunk:
                    return {"requests": n, "per_s": round(n / seconds), "closed by the server": True}
                got += chunk
            n += batch
    finally:
        s.close()
    return {"requests": n, "per_s": round(n / seconds)}


def _refused(url: str, data: bytes, n: int) -> dict:
    """``data`` sent in one write on each of ``n`` connections: the answers and whether each was closed."""
    statuses, closed, answers = set(), 0, 0
    for _ in range(n):
        with connect(url) as s:
            s.sendall(data)
            out, was_closed = read_all(s, 10)
        statuses.add(out[:12].decode("latin-1"))
        closed += was_closed
        answers += out.count(b"HTTP/1.1 ")
    return {"answers": sorted(statuses), "answers per connection": answers / n, "closed by the server": closed}


def _token_replaced(url: str, tokens, db, labels) -> dict:
    """Team 0 starts an upload, its token is replaced, the upload finishes: the answer, and whether it
    was recorded."""
    body = zip_of(labels)
    store = Store(db)
    before = len(store.submissions())
    with connect(url) as s:
        s.sendall(b"POST /submit?method=m HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tokens[0].encode()
                  + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:10])
        time.sleep(1)  # authenticated, the body under way
        store.new_token("team 0")
        s.sendall(body[10:])
        out, _ = read_all(s, 10)
    error = out.partition(b"\r\n\r\n")[2][:100].decode("utf-8", "replace")
    return {"answer": out[:12].decode("latin-1"), "body": error, "recorded": len(store.submissions()) - before}


if __name__ == "__main__":
    raise SystemExit(main())
