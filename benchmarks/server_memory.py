"""Evaluation server memory under attack: the peak resident memory (Linux VmHWM) of a fresh `lipstudy
serve` subprocess through each attack of issues 11 and 24, with the time to its answer. Writes
results/benchmarks/server_memory.json, beside the figures the issues reported for the old servers.

    python benchmarks/server_memory.py [--big-mib 512] [--slow 100] [--zip64-records 1300000]
"""
from __future__ import annotations

import argparse
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
from server_attacks import (RawEntry, ServerProcess, bomb_zip, deflate, png, png_declaring,  # noqa: E402
                            png_with_chunks, raw_zip, submit, text_bombs, write_hidden_set, zip64_directory, zip_of)

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
    p.add_argument("--out", help="result file (default results/benchmarks/server_memory.json)")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        labels = write_hidden_set(tmp / "bench", [(48, 64)] * 12)
        names = [f"{k}.png" for k in labels]
        huge = png_declaring(13000, 13000)
        text_pngs = zip_of({k: png_with_chunks(png(v), text_bombs(64)) for k, v in labels.items()})
        zip64 = zip64_directory(args.zip64_records)
        # Each attack gets the tokens of eight teams (tok[0] attacks unless it says otherwise).
        attacks = {
            "valid submission": lambda url, tok: submit(url, zip_of(labels), tok[0]),
            "two 1.5 GiB entries (declared)": lambda url, tok: submit(url, bomb_zip(names[:2], 1536 * 2 ** 20), tok[0]),
            "twelve 1.5 GiB entries declaring 100 bytes": lambda url, tok: submit(
                url, bomb_zip(names, 1536 * 2 ** 20, declared=100), tok[0]),
            "twelve 13000x13000 PNGs (5 KB zip)": lambda url, tok: submit(
                url, raw_zip([RawEntry(n, deflate(huge), file_size=len(huge)) for n in names]), tok[0]),
            f"zip64 directory of {args.zip64_records} records ({len(zip64) / 1e6:.0f} MB upload)":
                lambda url, tok: submit(url, zip64, tok[0], timeout=600),
            f"twelve PNGs with 64 zTXt chunks of 1 MiB each ({len(text_pngs) / 1e3:.0f} kB zip)":
                lambda url, tok: submit(url, text_pngs, tok[0]),
            f"{args.big_mib} MiB upload": lambda url, tok: stream_upload(url, tok[0], args.big_mib * 2 ** 20),
            "8 concurrent 64 MiB uploads (8 teams)": lambda url, tok: _concurrent(url, tok, 64 * 2 ** 20),
            "8 uploads of one team trickling a byte every 4 s": lambda url, tok: _trickle_and_submit(
                url, tok, labels),
            f"{args.slow} slow clients (headers never finished)": lambda url, tok: slow_clients(url, args.slow),
        }
        for k, (what, attack) in enumerate(attacks.items()):
            db = tmp / f"s{k}.db"
            store = Store(db)
            tokens = [store.add_team(f"team {j}")[1] for j in range(8)]
            # The slow clients all come from 127.0.0.1: no per-address limit there, to measure the rest.
            per_address = ["--max-connections-per-address", "0"] if what.endswith("finished)") else []
            with ServerProcess(tmp / "bench", db, "--max-upload-mb", str(args.big_mib + 64), *per_address,
                               log=tmp / f"s{k}.log") as srv:
                idle = srv.peak_rss()
                t0 = time.perf_counter()
                answer = attack(srv.url, tokens)
                seconds = time.perf_counter() - t0
                alive = submit(srv.url, zip_of(labels), tokens[-1])[0] == 200
                peak = srv.peak_rss()
            if what.endswith("finished)"):
                status = f"{answer[0]} of {args.slow} closed by the server"
            elif isinstance(answer, dict):
                status = answer
            else:
                status = answer[0] if not isinstance(answer, list) else sorted({a[0] for a in answer})
            rows.append({"attack": what, "answer": status,
                         "seconds": seconds, "idle_rss_mib": mib(idle), "peak_rss_mib": mib(peak),
                         "answers_next_request": alive})
            print(f"{what}: answer {rows[-1]['answer']} in {seconds:.2f} s; server peak RSS "
                  f"{mib(peak)} MiB (idle {mib(idle)} MiB); next request answered: {alive}",
                  flush=True)
    write_result("server_memory", {**device_info(torch.device("cpu")), "hidden_images": 12, "label_size": "48x64",
                                   "attacks": rows, "reported_before_issue_11": REPORTED_BEFORE,
                                   "reported_in_issue_24": REPORTED_IN_ISSUE_24}, args.out)
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


if __name__ == "__main__":
    raise SystemExit(main())
