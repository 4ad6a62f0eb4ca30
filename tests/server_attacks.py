"""Hostile submissions and a server in a subprocess: what the tests and ``benchmarks/server_*.py`` throw
at the server, written once.

The zips are built cheaply: :func:`deflated_zeros` repeats one compressed block (each block after a
full flush is independent), so a 1.5 GB entry of zeros costs one 16 MiB compression; :func:`raw_zip`
writes the zip structures by hand, so an entry can declare any size, method or flag.
"""
from __future__ import annotations

import http.client
import io
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from lipstudy.server.submission import PNG_SIGNATURE


def png(arr: np.ndarray, mode: str = "L", fmt: str = "PNG") -> bytes:
    """``arr`` encoded as an image file (``fmt`` PNG, GIF, TIFF, BMP...)."""
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, format=fmt)
    return buf.getvalue()


def write_hidden_set(root, sizes: list[tuple[int, int]], seed: int = 0, prefix: str = "img") -> dict[str, np.ndarray]:
    """A LIP-layout root with hidden labels of the given (height, width) sizes; returns ``{id: label}``."""
    root = Path(root)
    (root / "server" / "test_segmentations").mkdir(parents=True, exist_ok=True)
    (root / "Testing_images").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = {}
    for k, (h, w) in enumerate(sizes):
        lab = rng.integers(0, 20, (h, w)).astype(np.uint8)
        labels[f"{prefix}{k}"] = lab
        (root / "server" / "test_segmentations" / f"{prefix}{k}.png").write_bytes(png(lab))
    (root / "Testing_images" / "test_id.txt").write_text("".join(f"{i}\n" for i in labels))
    return labels


def zip_of(files: dict[str, bytes | np.ndarray], folder: str = "preds/") -> bytes:
    """A deflated zip of ``{id: png bytes or label array}`` as ``<folder><id>.png``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for k, v in files.items():
            z.writestr(f"{folder}{k}.png", v if isinstance(v, bytes) else png(v))
    return buf.getvalue()


@dataclass
class RawEntry:
    """One entry of a hand-written zip: ``data`` is stored as given (already compressed for method 8)."""

    name: str
    data: bytes
    method: int = zipfile.ZIP_DEFLATED
    flags: int = 0
    crc: int = 0
    file_size: int | None = None  # declared uncompressed size (default: len(data))


def raw_zip(entries: list[RawEntry], zip64: bool = False, classic: tuple[int, int] | None = None) -> bytes:
    """Local headers, data, central directory and end record, with the fields exactly as given.

    ``zip64`` adds a zip64 end record and its locator before the classic end record; ``classic`` is the
    (entry count, directory size) the classic record declares (default: the truth, or the saturated
    0xFFFF / 0xFFFFFFFF a zip64 writer puts there)."""
    out, central = io.BytesIO(), io.BytesIO()
    for e in entries:
        name = e.name.encode("utf-8")
        size = len(e.data) if e.file_size is None else e.file_size
        offset = out.tell()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, e.flags | 0x800, e.method, 0, 0x21,
                              e.crc, len(e.data), size, len(name), 0))
        out.write(name + e.data)
        central.write(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, e.flags | 0x800, e.method, 0, 0x21,
                                  e.crc, len(e.data), size, len(name), 0, 0, 0, 0, 0, offset))
        central.write(name)
    cd = central.getvalue()
    out.write(cd)
    return out.getvalue() + end_records(len(entries), len(cd), out.tell() - len(cd), zip64, classic)


def end_records(n_entries: int, cd_size: int, cd_offset: int, zip64: bool = False,
                classic: tuple[int, int] | None = None) -> bytes:
    """The end of a zip whose directory of ``n_entries`` records and ``cd_size`` bytes starts at
    ``cd_offset``: a zip64 end record and locator if ``zip64``, then the classic end record declaring
    ``classic`` = (entries, directory size)."""
    out = b""
    if zip64:
        out += struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, n_entries, n_entries, cd_size, cd_offset)
        out += struct.pack("<4sLQL", b"PK\x06\x07", 0, cd_offset + cd_size, 1)
    n, size = classic or ((0xFFFF, 0xFFFFFFFF) if zip64 else (n_entries, cd_size))
    return out + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, size, min(cd_offset, 0xFFFFFFFF), 0)


def zip64_directory(n_records: int, classic: tuple[int, int] = (0, 0)) -> bytes:
    """Issue 24's attack: ``n_records`` central directory records (46 bytes each, no name, no data)
    declared by a zip64 end record, behind a classic end record that declares ``classic`` (an empty
    directory by default). :mod:`zipfile` honours a zip64 locator whatever the classic record says, and
    builds a ~500-byte object for each record."""
    record = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0x21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    return record * n_records + end_records(n_records, 46 * n_records, 0, zip64=True, classic=classic)


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def deflated_zeros(n_bytes: int, block: int = 16 * 2 ** 20) -> bytes:
    """A raw deflate stream of ``n_bytes`` zeros (a multiple of ``block``), about 1000x smaller."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    one = c.compress(bytes(block)) + c.flush(zlib.Z_FULL_FLUSH)
    return one * (n_bytes // block) + c.flush()


def bomb_zip(names: list[str], n_bytes: int, declared: int | None = None) -> bytes:
    """Entries of ``n_bytes`` zeros each, declaring ``declared`` bytes (default: the truth)."""
    data = deflated_zeros(n_bytes)
    return raw_zip([RawEntry(n, data, file_size=n_bytes if declared is None else declared) for n in names])


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_with_chunks(data: bytes, chunks: list[bytes]) -> bytes:
    """A PNG (``data``) with ``chunks`` (from :func:`png_chunk`) inserted after its IHDR chunk."""
    return data[:33] + b"".join(chunks) + data[33:]


def text_bombs(n: int, inflated: int = 2 ** 20 - 1024, kind: bytes = b"zTXt") -> list[bytes]:
    """``n`` compressed metadata chunks (zTXt, iTXt or iCCP) of about a kilobyte, each inflating to
    ``inflated`` bytes: just under what Pillow inflates a chunk to (1 MiB), 64 of them just under its
    64 MiB total for text. Issue 24: a 74 kB PNG cost 64 MB to open."""
    packed = zlib.compress(bytes(inflated), 9)
    head = {b"zTXt": b"\0\0", b"iTXt": b"\0\1\0\0\0", b"iCCP": b"\0\0"}[kind]
    # Distinct keywords: Pillow keeps the text of each keyword, so every chunk stays in memory.
    return [png_chunk(kind, b"k%d" % k + head + packed) for k in range(n)]


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header says ``width x height`` (grayscale) with a few bytes of pixel data."""
    chunk = png_chunk
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(4096))) + chunk(b"IEND", b"")


# ---------------------------------------------------------------------------------------------
# talking to a server


def request(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None,
            timeout: float = 60) -> tuple[int, dict | str]:
    """One HTTP request; ``(status, parsed JSON or text)``."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request(method, u.path + (f"?{u.query}" if u.query else ""), body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(data)
    except ValueError:
        return resp.status, data.decode("utf-8", "replace")


def submit(base: str, body: bytes, token: str | None, method: str = "m", timeout: float = 60):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return request(f"{base}/submit?method={method}", "POST", body, headers, timeout)


class ServerProcess:
    """``lipstudy serve`` in a subprocess on a free loopback port (to measure its memory, or kill it)."""

    def __init__(self, data, db, *args: str, log=None, start_timeout: float = 60):
        cmd = [sys.executable, "-m", "lipstudy.cli", "serve", "--data", str(data), "--db", str(db),
               "--host", "127.0.0.1", "--port", "0", *args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.log = open(log or os.devnull, "w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(start_timeout)
        if not line or "http://" not in line[0]:
            self.kill()
            raise RuntimeError(f"server did not start: {line[:1]} (see {log})")
        self.url = line[0].split("http://", 1)[1].split("/", 1)[0]
        self.url = f"http://{self.url}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def peak_rss(self) -> int | None:
        """Peak resident memory of the server process so far, in bytes (Linux's VmHWM; None elsewhere)."""
        status = Path(f"/proc/{self.pid}/status")
        if not status.exists():
            return None
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return None

    def kill(self) -> None:
        """SIGKILL: no cleanup, as a crash or an OOM kill would."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        self.log.close()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_until(predicate, timeout: float = 30, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


# ---------------------------------------------------------------------------------------------
# attacks on the connection (issue 41), and what the kernel holds for them


def connect(url: str, timeout: float = 10) -> socket.socket:
    u = urlsplit(url)
    return socket.create_connection((u.hostname, u.port), timeout=timeout)


def pipelined_gets(n: int, path: bytes = b"/") -> bytes:
    """``n`` keep-alive requests in one write: a client that sends them and never reads the answers
    keeps the server writing until the kernel's buffers are full (issue 41)."""
    return (b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n") * n


def stalled_readers(url: str, n: int, requests_each: int = 3000, path: bytes = b"/") -> list[socket.socket]:
    """``n`` connections, each pipelining ``requests_each`` GETs and never reading an answer."""
    socks = []
    for _ in range(n):
        s = connect(url)
        s.setblocking(False)
        data = pipelined_gets(requests_each, path)
        sent = 0
        deadline = time.monotonic() + 10
        while sent < len(data) and time.monotonic() < deadline:  # until the server stops reading
            try:
                sent += s.send(data[sent:])
            except BlockingIOError:
                time.sleep(0.01)
            except OSError:
                break
        socks.append(s)
    return socks


def malformed_request(k: int = 0) -> bytes:
    """A request h11 cannot parse (a NUL in its target): uvicorn answers 400 and closes."""
    return b"GET /\x00%d HTTP/1.1\r\nHost: x\r\n\r\n" % k


def malformed_requests(n: int) -> list[bytes]:
    """``n`` requests h11 cannot parse, each for its own connection."""
    return [malformed_request(k) for k in range(n)]


def upgrade_requests(n: int) -> bytes:
    """``n`` pipelined ``Upgrade: websocket`` requests: uvicorn logged two warnings for each (issue 41)."""
    return (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n") * n


def many_headers(n: int = 10_000, path: bytes = b"/leaderboard") -> bytes:
    """One request with ``n`` headers (about 10 bytes each), meant to arrive in one read."""
    return (b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % k for k in range(n))
            + b"Connection: close\r\n\r\n")


def one_long_header(nbytes: int = 100 * 1024, path: bytes = b"/leaderboard") -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * nbytes + b"\r\nConnection: close\r\n\r\n"


def length_and_chunked(path: bytes = b"/leaderboard") -> bytes:
    """A request framed two ways (Content-Length and Transfer-Encoding), then a second one pipelined
    behind it: a proxy that frames by length and a server that frames by chunks disagree on where the
    second request starts (request smuggling; RFC 9112 section 6.3: the server must close)."""
    return (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\nGET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")


def read_all(sock: socket.socket, timeout: float = 10) -> tuple[bytes, bool]:
    """Everything ``sock`` receives within ``timeout`` s; and whether the server closed it by then."""
    sock.setblocking(True)
    deadline = time.monotonic() + timeout
    out = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return out, False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return out, False
        except ConnectionResetError:
            return out, True
        if not chunk:
            return out, True
        out += chunk


def _tcp_table():
    """Linux's TCP sockets: (local port, remote port, state, tx queue bytes, rx queue bytes) each."""
    rows = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            tx, rx = (int(x, 16) for x in f[4].split(":"))
            rows.append((int(f[1].rsplit(":", 1)[1], 16), int(f[2].rsplit(":", 1)[1], 16), int(f[3], 16), tx, rx))
    return rows


def server_connections(port: int) -> int | None:
    """Connections the kernel holds on the server's side of ``port``: established, or closing with data
    still queued (TIME_WAIT and the like hold nothing); None where /proc/net/tcp is missing (not Linux)."""
    if not Path("/proc/net/tcp").exists():
        return None
    return sum(1 for local, _, state, tx, rx in _tcp_table()
               if local == port and state != 0x0A and (state == 0x01 or tx or rx))  # 0x0A LISTEN, 0x01 ESTABLISHED


def queued_bytes(port: int) -> int | None:
    """Bytes the kernel holds queued on the connections of ``port``: the server's unsent answers (its
    send queues) and the clients' unread ones (their receive queues, on loopback the same machine)."""
    if not Path("/proc/net/tcp").exists():
        return None
    return sum(tx + rx for local, remote, _, tx, rx in _tcp_table() if port in (local, remote))


def tcp_memory() -> int | None:
    """The kernel's memory for all TCP sockets of the machine (``/proc/net/sockstat``, pages), in bytes."""
    try:
        for line in Path("/proc/net/sockstat").read_text().splitlines():
            if line.startswith("TCP:"):
                f = line.split()
                return int(f[f.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None
    return None


class Probe:
    """A legitimate client during an attack: ``GET path`` on a new connection every ``every_s`` seconds,
    in a thread, until :meth:`stop`, which returns how it fared (latencies in seconds)."""

    def __init__(self, url: str, path: str = "/leaderboard", every_s: float = 0.25, timeout: float = 30):
        self.url, self.path, self.every_s, self.timeout = url, path, every_s, timeout
        self.latencies: list[float] = []
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                status, _ = request(self.url + self.path, timeout=self.timeout)
                (self.latencies if status == 200 else self.failed).append(
                    time.perf_counter() - t0 if status == 200 else f"status {status}")
            except OSError as e:
                self.failed.append(type(e).__name__)
            self._stop.wait(self.every_s)

    def __enter__(self) -> "Probe":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 5)

    def summary(self) -> dict:
        lat = sorted(self.latencies)

        def q(p):
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 4) if lat else None

        return {"requests": len(lat) + len(self.failed), "answered": len(lat), "failed": sorted(set(self.failed)),
                "p50_s": q(0.5), "p99_s": q(0.99), "max_s": round(lat[-1], 4) if lat else None}


class KernelSampler:
    """What the kernel holds for a server's port while an attack runs, sampled every ``every_s`` seconds
    in a thread: the server's connections, the bytes queued on them (server and clients, both on this
    machine on loopback) and the machine's TCP memory above what it was at the start."""

    def __init__(self, port: int, every_s: float = 0.1):
        self.port, self.every_s = port, every_s
        self.base = tcp_memory()
        self.peak = {"server_connections": 0, "queued_bytes": 0, "tcp_memory_bytes": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> dict:
        mem = tcp_memory()
        return {"server_connections": server_connections(self.port), "queued_bytes": queued_bytes(self.port),
                "tcp_memory_bytes": None if mem is None or self.base is None else max(0, mem - self.base)}

    def _run(self) -> None:
        while not self._stop.is_set():
            for k, v in self.sample().items():
                if v is not None:
                    self.peak[k] = max(self.peak[k], v)
            self._stop.wait(self.every_s)

    def __enter__(self) -> "KernelSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
