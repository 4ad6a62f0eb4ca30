"""Evaluation server memory under attack: the peak resident memory (Linux VmHWM) of a fresh `lipstudy
serve` subprocess through each attack of issue 11, with the time to its answer. Writes
results/benchmarks/server_memory.json, beside the figures issue 11 reported for the old server.

    python benchmarks/server_memory.py [--big-mib 512] [--slow 100]
"""
from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path

import torch

from _common import device_info, write_result
from lipstudy.server import Store
from lipstudy.server.attacks import (RawEntry, ServerProcess, bomb_zip, deflate, png_declaring, raw_zip, submit,
                                     write_hidden_set, zip_of)

REPORTED_BEFORE = {  # issue 11, the http.server version
    "one 1.5 GB entry (1.5 MB upload)": "3.1 GB",
    "two 1.5 GB entries": "over 4 GB",
    "twelve 13000x13000 PNGs in a 6 KB zip": "527 MB and 16 s of CPU",
    "512 MiB upload": "560 MB",
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
    p.add_argument("--out", help="result file (default results/benchmarks/server_memory.json)")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        labels = write_hidden_set(tmp / "bench", [(48, 64)] * 12)
        names = [f"{k}.png" for k in labels]
        huge = png_declaring(13000, 13000)
        attacks = {
            "valid submission": lambda url, tok: submit(url, zip_of(labels), tok),
            "two 1.5 GiB entries (declared)": lambda url, tok: submit(url, bomb_zip(names[:2], 1536 * 2 ** 20), tok),
            "twelve 1.5 GiB entries declaring 100 bytes": lambda url, tok: submit(
                url, bomb_zip(names, 1536 * 2 ** 20, declared=100), tok),
            "twelve 13000x13000 PNGs (5 KB zip)": lambda url, tok: submit(
                url, raw_zip([RawEntry(n, deflate(huge), file_size=len(huge)) for n in names]), tok),
            f"{args.big_mib} MiB upload": lambda url, tok: stream_upload(url, tok, args.big_mib * 2 ** 20),
            "8 concurrent 64 MiB uploads": lambda url, tok: _concurrent(url, tok, 8, 64 * 2 ** 20),
            f"{args.slow} slow clients (headers never finished)": lambda url, tok: slow_clients(url, args.slow),
        }
        for k, (what, attack) in enumerate(attacks.items()):
            db = tmp / f"s{k}.db"
            _, token = Store(db).add_team("a")
            with ServerProcess(tmp / "bench", db, "--max-upload-mb", str(args.big_mib + 64),
                               log=tmp / f"s{k}.log") as srv:
                idle = srv.peak_rss()
                t0 = time.perf_counter()
                answer = attack(srv.url, token)
                seconds = time.perf_counter() - t0
                alive = submit(srv.url, zip_of(labels), token)[0] == 200
                peak = srv.peak_rss()
            status = answer[0] if not isinstance(answer, list) else sorted({a[0] for a in answer})
            rows.append({"attack": what, "answer": status if not what.endswith("finished)") else
                         f"{answer[0]} of {args.slow} closed by the server",
                         "seconds": seconds, "idle_rss_mib": mib(idle), "peak_rss_mib": mib(peak),
                         "answers_next_request": alive})
            print(f"{what}: answer {rows[-1]['answer']} in {seconds:.2f} s; server peak RSS "
                  f"{mib(peak)} MiB (idle {mib(idle)} MiB); next request answered: {alive}",
                  flush=True)
    write_result("server_memory", {**device_info(torch.device("cpu")), "hidden_images": 12, "label_size": "48x64",
                                   "attacks": rows, "reported_before_issue_11": REPORTED_BEFORE}, args.out)
    return 0


def _concurrent(url, token, n, nbytes):
    out = [None] * n

    def one(i):
        out[i] = stream_upload(url, token, nbytes)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


if __name__ == "__main__":
    raise SystemExit(main())
