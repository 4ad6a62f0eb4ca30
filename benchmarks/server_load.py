"""Evaluation server under load, and under load while attacked: concurrent clients on loopback submitting
valid and invalid zips to a `lipstudy serve` subprocess. Reports submissions/s, p50/p99 latency (valid
and invalid), the server's peak memory, the answers by status, and checks that every acknowledged
submission is in the database afterwards. The same load then runs again against a fresh server while an
attack of issue 41 runs beside it (connections that never read their answers, a flood of malformed
requests, pipelined upgrade requests, 10,000-header requests): the same figures, the attack's rate, how
much the log grew and what the kernel held. Writes results/benchmarks/server_load.json.

    python benchmarks/server_load.py [--clients 50] [--per-client 4] [--images 20] [--size 96x128]
                                     [--attacks stalled,malformed,upgrade,headers] [--stalled 20]

Clients and attackers run as threads of this process, so on a small machine they share the CPU with the
server: the figures are for the lot, on the machine named in the result file.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from _common import REPO, device_info, write_result

sys.path.insert(0, str(REPO / "tests"))  # the attack kit lives with the tests

from lipstudy.server import Store  # noqa: E402
from server_attacks import (KernelSampler, RawEntry, ServerProcess, bomb_zip, connect,  # noqa: E402
                            malformed_request, many_headers, png, raw_zip, read_all, stalled_readers, submit,
                            upgrade_requests, write_hidden_set, zip_of)


def submissions(labels: dict, seed: int) -> list[tuple[str, bytes]]:
    """The mix each client cycles through: (kind, zip bytes); kinds starting with "valid" must score."""
    rng = np.random.default_rng(seed)
    noisy = {k: np.where(rng.random(v.shape) < 0.3, rng.integers(0, 20, v.shape), v).astype(np.uint8)
             for k, v in labels.items()}
    ids = list(labels)
    wrong_size = {**labels, ids[0]: np.zeros((3, 3), np.uint8)}
    gif = {**labels, ids[1]: png(labels[ids[1]], fmt="GIF")}
    return [
        ("valid: perfect", zip_of(labels)),
        ("invalid: wrong size", zip_of(wrong_size)),
        ("valid: 30% noise", zip_of(noisy)),
        ("invalid: GIF named .png", zip_of(gif)),
        ("invalid: zip bomb (1.5 GiB entry)", bomb_zip([f"{ids[0]}.png"], 1536 * 2 ** 20)),
        ("invalid: not a zip", b"PK" + bytes(1000)),
        ("invalid: deflate64 entry", raw_zip([RawEntry(f"{i}.png", b"\0" * 64, method=9) for i in ids])),
    ]


def mib(nbytes: int | None) -> float | None:
    """Bytes as MiB (None where the peak is not measurable: VmHWM is Linux's)."""
    return None if nbytes is None else round(nbytes / 2 ** 20, 1)


class Attack:
    """An attack of issue 41 running beside the load, in threads, from start to stop; ``sent`` counts
    its requests (or connections)."""

    def __init__(self, name: str, url: str, stalled: int):
        self.name, self.url, self.stalled = name, url, stalled
        self.sent, self.socks, self._stop = 0, [], threading.Event()
        self._threads = [threading.Thread(target=getattr(self, f"_{name}"), daemon=True)
                         for _ in range(1 if name == "stalled" else 2)]

    def _stalled(self) -> None:  # connections pipelining GETs and never reading, renewed as they are dropped
        while not self._stop.is_set():
            self.socks += stalled_readers(self.url, self.stalled, requests_each=3000)
            self.sent += self.stalled
            self._stop.wait(5)

    def _malformed(self) -> None:  # one connection each, as fast as answered
        while not self._stop.is_set():
            with connect(self.url) as s:
                s.sendall(malformed_request(self.sent))
                read_all(s, 5)
            self.sent += 1

    def _upgrade(self) -> None:  # pipelined on one connection, answers read
        with connect(self.url, timeout=60) as s:
            while not self._stop.is_set():
                s.sendall(upgrade_requests(200))
                got = b""
                while got.count(b"HTTP/1.1 ") < 200:
                    chunk = s.recv(2 ** 20)
                    if not chunk:
                        return
                    got += chunk
                self.sent += 200

    def _headers(self) -> None:  # 10,000 headers in one read, one connection each
        data = many_headers()
        while not self._stop.is_set():
            with connect(self.url) as s:
                s.sendall(data)
                read_all(s, 10)
            self.sent += 1

    def __enter__(self) -> "Attack":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        for s in self.socks:
            s.close()


def run_load(tmp: Path, labels: dict, args, attack: str | None) -> dict:
    """The load against a fresh server, with ``attack`` beside it (None: alone); its figures."""
    name = attack or "none"
    db = tmp / f"server-{name}.db"
    store = Store(db)
    tokens = [store.add_team(f"team {k}")[1] for k in range(args.clients)]
    mix = submissions(labels, seed=0)
    results, lock = [], threading.Lock()
    log = tmp / f"server-{name}.log"
    # Every client connects from 127.0.0.1: no per-address connection limit, as behind a proxy.
    with ServerProcess(tmp / "bench", db, "--quota", "100000", "--max-upload-mb", "8",
                       "--scoring-threads", str(args.scoring_threads), "--max-connections-per-address", "0",
                       log=log) as srv:
        idle_rss = srv.peak_rss()
        start = threading.Barrier(args.clients + 1)

        def client(k: int) -> None:
            start.wait()
            for j in range(args.per_client):
                kind, body = mix[(k + j) % len(mix)]
                t0 = time.perf_counter()
                try:
                    status, reply = submit(srv.url, body, tokens[k], method=f"c{k}-{j}", timeout=300)
                except OSError as e:
                    status, reply = f"error: {type(e).__name__}", {}
                with lock:
                    results.append({"kind": kind, "status": status, "s": time.perf_counter() - t0,
                                    "id": reply.get("submission") if isinstance(reply, dict) else None})

        port = int(srv.url.rsplit(":", 1)[1])
        with KernelSampler(port) as kernel, (Attack(attack, srv.url, args.stalled) if attack
                                             else contextlib.nullcontext()) as attacker:
            time.sleep(1 if attack else 0)  # the attack under way before the load starts
            threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
            for t in threads:
                t.start()
            start.wait()
            t0 = time.perf_counter()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
        peak_rss = srv.peak_rss()
    rows = {r["public_id"]: r for r in Store(db).submissions()}
    integrity = Store(db).integrity()

    def pct(xs, q):
        return float(np.percentile(xs, q)) if xs else None

    valid = [r for r in results if r["kind"].startswith("valid")]
    invalid = [r for r in results if not r["kind"].startswith("valid")]
    acked = [r for r in results if r["status"] == 200]
    missing = [r["id"] for r in acked if r["id"] not in rows or rows[r["id"]]["status"] != "scored"]
    refused = [r for r in results if r["status"] == 422]
    out = {
        "submissions": len(results), "wall_s": wall, "submissions_per_s": len(results) / wall,
        "scored_per_s": len(acked) / wall,
        "latency_s": {"p50": pct([r["s"] for r in results], 50), "p99": pct([r["s"] for r in results], 99),
                      "valid_p50": pct([r["s"] for r in valid], 50), "valid_p99": pct([r["s"] for r in valid], 99),
                      "invalid_p50": pct([r["s"] for r in invalid], 50),
                      "invalid_p99": pct([r["s"] for r in invalid], 99)},
        "answers": {str(k): v for k, v in Counter(r["status"] for r in results).items()},
        "answers_by_kind": {kind: dict(Counter(str(r["status"]) for r in results if r["kind"] == kind))
                            for kind, _ in mix},
        "server_rss_idle_mib": mib(idle_rss), "server_peak_rss_mib": mib(peak_rss),
        "acknowledged": len(acked), "acknowledged_missing_from_db": len(missing),
        "refusals_recorded": sum(1 for r in refused if r["id"] in rows and rows[r["id"]]["status"] == "refused"),
        "refusals": len(refused), "db_integrity": integrity,
        "log_bytes": log.stat().st_size,
        "kernel_peak": {"server_connections": kernel.peak["server_connections"],
                        "queued_mib": mib(kernel.peak["queued_bytes"]),
                        "tcp_memory_mib": mib(kernel.peak["tcp_memory_bytes"])},
    }
    if attack:
        out["attack_requests"] = attacker.sent
    lat = out["latency_s"]
    print(f"[{name}] {len(results)} submissions from {args.clients} clients in {wall:.1f} s: "
          f"{out['submissions_per_s']:.1f} submissions/s ({out['scored_per_s']:.1f} scored/s); "
          f"latency p50 {lat['p50']:.2f} s, p99 {lat['p99']:.2f} s (valid p50 {lat['valid_p50']:.2f} s, "
          f"invalid p50 {lat['invalid_p50']:.2f} s); answers {out['answers']}; server peak RSS "
          f"{out['server_peak_rss_mib']} MiB (idle {out['server_rss_idle_mib']}); {len(acked)} acknowledged, "
          f"{len(missing)} missing from the database; integrity {integrity}; log {out['log_bytes']} bytes; "
          f"kernel peak {out['kernel_peak']}" + (f"; attack sent {attacker.sent}" if attack else ""), flush=True)
    return out


ATTACKS = {
    "stalled": "connections pipelining 3000 GET / each and never reading, renewed every 5 s",
    "malformed": "malformed requests, one connection each, from 2 threads as fast as answered",
    "upgrade": "Upgrade: websocket requests pipelined 200 at a time on one connection each, 2 threads",
    "headers": "requests of 10,000 headers in one read, one connection each, 2 threads",
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--per-client", type=int, default=4, help="submissions each client sends")
    p.add_argument("--images", type=int, default=20, help="hidden test images")
    p.add_argument("--size", default="96x128", help="HxW of each hidden label")
    p.add_argument("--scoring-threads", type=int, default=2)
    p.add_argument("--attacks", default=",".join(ATTACKS), help="attacks to run beside the load ('' for none)")
    p.add_argument("--stalled", type=int, default=20, help="connections of the stalled-reader attack")
    p.add_argument("--before", help="a result file of an earlier run, embedded (e.g. of the code before a fix)")
    p.add_argument("--before-label", default="before", help="what the earlier run measured (e.g. a commit)")
    p.add_argument("--out", help="result file (default results/benchmarks/server_load.json)")
    args = p.parse_args(argv)
    h, w = (int(x) for x in args.size.split("x"))
    attacks = [a for a in args.attacks.split(",") if a]
    unknown = set(attacks) - set(ATTACKS)
    if unknown:
        p.error(f"unknown attacks {sorted(unknown)}; choose from {', '.join(ATTACKS)}")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        labels = write_hidden_set(tmp / "bench", [(h, w)] * args.images)
        alone = run_load(tmp, labels, args, None)
        under = {a: {"attack": ATTACKS[a], **run_load(tmp, labels, args, a)} for a in attacks}
    result = {
        **device_info(torch.device("cpu")), "load_average_1min": [load, os.getloadavg()[0]],
        "clients": args.clients, "hidden_images": args.images,
        "label_size": f"{h}x{w}", "scoring_threads": args.scoring_threads,
        "connections_per_address": "no limit (every client is 127.0.0.1)",
        **alone, "under_attack": under,
    }
    if args.before:
        before = json.loads(Path(args.before).read_text())
        keys = ("submissions_per_s", "latency_s", "answers", "server_peak_rss_mib", "acknowledged_missing_from_db",
                "log_bytes", "kernel_peak", "attack_requests")
        result["before"] = {"label": args.before_label, "alone": {k: before.get(k) for k in keys[:-1]},
                            "under_attack": {a: {k: r.get(k) for k in keys}
                                             for a, r in before.get("under_attack", {}).items()}}
    write_result("server_load", result, args.out)
    ok = all(r["acknowledged_missing_from_db"] == 0 and r["db_integrity"] == "ok" for r in [alone, *under.values()])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
