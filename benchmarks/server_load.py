"""Evaluation server under load: concurrent clients on loopback submitting valid and invalid zips to a
`lipstudy serve` subprocess. Reports submissions/s, p50/p99 latency (valid and invalid), the server's
peak memory, the answers by status, and checks that every acknowledged submission is in the database
afterwards. Writes results/benchmarks/server_load.json.

    python benchmarks/server_load.py [--clients 50] [--per-client 4] [--images 20] [--size 96x128]

Clients run as threads of this process, so on a small machine they share the CPU with the server:
the figures are for the pair, on the machine named in the result file.
"""
from __future__ import annotations

import argparse
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
from server_attacks import (RawEntry, ServerProcess, bomb_zip, png, raw_zip, submit,  # noqa: E402
                            write_hidden_set, zip_of)


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--per-client", type=int, default=4, help="submissions each client sends")
    p.add_argument("--images", type=int, default=20, help="hidden test images")
    p.add_argument("--size", default="96x128", help="HxW of each hidden label")
    p.add_argument("--scoring-threads", type=int, default=2)
    p.add_argument("--out", help="result file (default results/benchmarks/server_load.json)")
    args = p.parse_args(argv)
    h, w = (int(x) for x in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        labels = write_hidden_set(tmp / "bench", [(h, w)] * args.images)
        db = tmp / "server.db"
        store = Store(db)
        tokens = [store.add_team(f"team {k}")[1] for k in range(args.clients)]
        mix = submissions(labels, seed=0)
        results, lock = [], threading.Lock()
        # Every client connects from 127.0.0.1: no per-address connection limit, as behind a proxy.
        with ServerProcess(tmp / "bench", db, "--quota", "100000", "--max-upload-mb", "8",
                           "--scoring-threads", str(args.scoring_threads), "--max-connections-per-address", "0",
                           log=tmp / "server.log") as srv:
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
    result = {
        **device_info(torch.device("cpu")),
        "clients": args.clients, "submissions": len(results), "hidden_images": args.images,
        "label_size": f"{h}x{w}", "scoring_threads": args.scoring_threads,
        "connections_per_address": "no limit (every client is 127.0.0.1)",
        "wall_s": wall, "submissions_per_s": len(results) / wall,
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
    }
    lat = result["latency_s"]
    print(f"{len(results)} submissions from {args.clients} clients in {wall:.1f} s: "
          f"{result['submissions_per_s']:.1f} submissions/s ({result['scored_per_s']:.1f} scored/s); "
          f"latency p50 {lat['p50']:.2f} s, p99 {lat['p99']:.2f} s (valid p50 {lat['valid_p50']:.2f} s, "
          f"invalid p50 {lat['invalid_p50']:.2f} s); answers {result['answers']}; server peak RSS "
          f"{result['server_peak_rss_mib']} MiB (idle {result['server_rss_idle_mib']}); "
          f"{len(acked)} acknowledged, {len(missing)} missing from the database; integrity {integrity}")
    write_result("server_load", result, args.out)
    return 0 if not missing and integrity == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())
