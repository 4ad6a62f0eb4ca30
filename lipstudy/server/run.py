"""Serving the app with uvicorn: its limits and timeouts, a header timeout it lacks, and a server in a
background thread for tests and benchmarks.

Uvicorn refuses malformed requests itself (a non-numeric ``Content-Length`` is a 400 from its HTTP
parser, h11), bounds an incomplete header section (``h11_max_incomplete_event_size``), the number of
connections and tasks (``limit_concurrency``, 503 beyond) and idle keep-alive connections
(``timeout_keep_alive``). It has no timeout for a client that connects and then sends its headers
slowly or not at all: :class:`HeaderTimeoutH11` adds one. Bodies are timed by the app
(:mod:`.app`), which reads them.
"""
from __future__ import annotations

import socket
import threading
import time

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .app import Settings


class HeaderTimeoutH11(H11Protocol):
    """uvicorn's h11 protocol plus a deadline for each request's header section.

    The timer starts when the connection opens and again after each answer; only the start of a new
    request (a complete header section) stops it. A client that sends nothing, or drips its headers,
    or keeps sending a body the server already answered, is disconnected after ``header_timeout_s``.
    """

    header_timeout_s = 10.0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._timer = None
        self._arm()

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
        super().connection_lost(exc)


def uvicorn_config(app, settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> uvicorn.Config:
    protocol = type("LipstudyH11", (HeaderTimeoutH11,), {"header_timeout_s": settings.header_timeout_s})
    return uvicorn.Config(app, host=host, port=port, http=protocol, ws="none", lifespan="off",
                          interface="asgi3", access_log=False, log_level="warning", server_header=False,
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
