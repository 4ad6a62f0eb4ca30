"""Serving the app with uvicorn: its limits and timeouts, what it lacks (a header timeout, a limit of
connections per client address, security headers on its own answers), and a server in a background
thread for tests and benchmarks.

Uvicorn refuses malformed requests itself (a non-numeric ``Content-Length`` is a 400 from its HTTP
parser, h11), bounds an incomplete header section (``h11_max_incomplete_event_size``), the number of
connections and tasks (``limit_concurrency``, 503 beyond) and idle keep-alive connections
(``timeout_keep_alive``). It has no timeout for a client that connects and then sends its headers
slowly or not at all, and lets one address hold every connection ``limit_concurrency`` allows:
:class:`HeaderTimeoutH11` adds both. The security headers (:data:`.app.SECURITY_HEADERS`) are given to
uvicorn as default headers, so its own 503 carries them, and the protocol's 400 adds them. Bodies are
timed by the app (:mod:`.uploads`), which reads them.
"""
from __future__ import annotations

import json
import socket
import threading
import time

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .app import SECURITY_HEADERS, Settings

_HEADERS = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS]


class HeaderTimeoutH11(H11Protocol):
    """uvicorn's h11 protocol plus a deadline for each request's header section, a limit of open
    connections per client address, and the security headers on its 400.

    The timer starts when the connection opens and again after each answer; only the start of a new
    request (a complete header section) stops it. A client that sends nothing, or drips its headers,
    or keeps sending a body the server already answered, is disconnected after ``header_timeout_s``.

    Idle connections need no token: without a per-address limit one client could hold all
    ``limit_concurrency`` of them, renewing each as it times out. A connection past
    ``max_per_address`` from one address is answered 503 and closed at once. Behind a reverse proxy
    every connection comes from the proxy's address: set the limit to 0 there and let the proxy limit
    clients. ``open_by_address`` is per server (:func:`uvicorn_config` makes a subclass for each).
    """

    header_timeout_s = 10.0
    max_per_address = 0
    open_by_address: dict = {}

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._timer, self._address = None, None
        address = self.client[0] if self.client else None
        if self.max_per_address and address is not None:
            if self.open_by_address.get(address, 0) >= self.max_per_address:
                self._refuse(f"more than {self.max_per_address} open connections from {address}; close some")
                return
            self.open_by_address[address] = self.open_by_address.get(address, 0) + 1
            self._address = address
        self._arm()

    def _refuse(self, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        head = [b"HTTP/1.1 503 Service Unavailable", b"content-type: application/json",
                b"content-length: %d" % len(body), b"connection: close", b"retry-after: 10"]
        head += [k + b": " + v for k, v in _HEADERS]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 cannot parse, with a JSON body and the security headers."""
        body = json.dumps({"error": f"malformed HTTP request ({msg.rstrip('.').lower()})"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close"), *_HEADERS]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
                      h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()

    def _arm(self) -> None:
        self._cancel()
        self._armed_for = self.cycle  # the request in progress; a different one means new headers arrived
        self._timer = self.loop.call_later(self.header_timeout_s, self._expire)

    def _cancel(self) -> None:
        if getattr(self, "_timer", None) is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            self.transport.close()  # connection_lost settles the HTTP state

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._timer is not None and self.cycle is not self._armed_for:
            self._cancel()

    def on_response_complete(self) -> None:
        before = self.cycle
        super().on_response_complete()
        if not self.transport.is_closing() and self.cycle is before:
            self._arm()

    def connection_lost(self, exc) -> None:
        self._cancel()
        if self._address is not None:
            left = self.open_by_address[self._address] - 1
            if left:
                self.open_by_address[self._address] = left
            else:
                del self.open_by_address[self._address]
            self._address = None
        super().connection_lost(exc)


def uvicorn_config(app, settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> uvicorn.Config:
    protocol = type("LipstudyH11", (HeaderTimeoutH11,), {
        "header_timeout_s": settings.header_timeout_s, "max_per_address": settings.max_connections_per_address,
        "open_by_address": {}})
    return uvicorn.Config(app, host=host, port=port, http=protocol, ws="none", lifespan="off",
                          interface="asgi3", access_log=False, log_level="warning", server_header=False,
                          headers=list(SECURITY_HEADERS),
                          timeout_keep_alive=settings.keep_alive_s, limit_concurrency=settings.limit_concurrency,
                          h11_max_incomplete_event_size=settings.max_header_bytes, timeout_graceful_shutdown=5)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free port): the caller knows the port, and clients that connect
    before uvicorn has started wait in the backlog instead of being refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


class RunningServer:
    """The server in a background thread (tests, benchmarks): ``with RunningServer(app, s) as srv: srv.url``."""

    def __init__(self, app, settings: Settings, host: str = "127.0.0.1", port: int = 0):
        self.app, self.sock = app, bind(host, port)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn_config(app, settings, host, self.port))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> "RunningServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()
