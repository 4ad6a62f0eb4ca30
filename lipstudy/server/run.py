"""Serving the app with uvicorn: its limits and timeouts, what it lacks, and a server in a background
thread for tests and benchmarks.

Uvicorn refuses malformed requests itself (a non-numeric ``Content-Length`` is a 400 from its HTTP
parser, h11), bounds the number of connections and tasks (``limit_concurrency``, 503 beyond) and idle
keep-alive connections (``timeout_keep_alive``). What it lacks, :class:`GuardedH11` adds:

- a deadline for each request's header section, and for each answer's delivery: a client that does not
  send its headers, or does not read its answers (issue 41: a few thousand pipelined ``GET /`` never
  read kept a connection and megabytes of kernel memory for good), is dropped;
- a bound on the header section's bytes however it arrives (h11 bounds only a section still incomplete
  after a read: 10,000 headers in one read got 200), and a refusal of a request framed both by
  ``Content-Length`` and ``Transfer-Encoding`` (request smuggling: RFC 9112 section 6.3), both answered
  and the connection closed;
- a limit of open connections per client address, and its own log through :class:`.log.ClientLog`
  (rate- and size-limited);
- the security headers on its own answers (:data:`.app.SECURITY_HEADERS` are given to uvicorn as default
  headers, so its 503 carries them; the protocol's 400 and 431 add them).

Bodies are timed by the app (:mod:`.uploads`), which reads them.
"""
from __future__ import annotations

import contextlib
import fcntl
import http
import json
import re
import socket
import struct
import termios
import threading
import time

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .app import SECURITY_HEADERS, Settings
from .log import ClientLog, ConnectionLog

_HEADERS = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS]
_BLANK_LINE = re.compile(b"\n\r?\n")  # the end of a header section, as h11 finds it


class BoundedH11Connection(h11.Connection):
    """h11's server side with two refusals it lacks: a header section (request line to blank line) of
    more than ``max_header_bytes`` bytes as received, whatever the reads it came in; and
    ``Content-Length`` together with ``Transfer-Encoding``. ``refusal`` keeps the last refusal (h11's own included) as
    (status, message): 431 for a header section too long, else 400. Not the exception: its traceback
    would keep the parser and what it parsed alive in a reference cycle until a full garbage collection
    (1.8 MiB a refusal of 10,000 parsed headers)."""

    def __init__(self, max_header_bytes: int):
        super().__init__(h11.SERVER, max_incomplete_event_size=max_header_bytes)
        self.max_header_bytes = max_header_bytes
        self.refusal: tuple[int, str] | None = None

    def next_event(self):
        try:
            # The header section ends at the first blank line; one that does not end within the limit
            # is refused here, before h11 parses it (10,000 headers, 109 kB, take h11 about 80 ms of the
            # event loop). h11 itself only refuses a section still incomplete past the limit. The
            # buffer is h11's own (h11 is pinned exactly in requirements.lock, and tests send 10,000
            # headers in one read): finding the section outside it would mean framing HTTP twice.
            buf = self._receive_buffer
            if (self.their_state is h11.IDLE and len(buf) > self.max_header_bytes
                    and not _BLANK_LINE.search(buf._data, 0, self.max_header_bytes)):
                raise h11.RemoteProtocolError("header section too long", error_status_hint=431)
            event = super().next_event()
            if isinstance(event, h11.Request):
                names = {name for name, _ in event.headers}
                if b"content-length" in names and b"transfer-encoding" in names:
                    raise h11.RemoteProtocolError("both Content-Length and Transfer-Encoding")
        except h11.RemoteProtocolError as e:
            # h11's own "Receive buffer too long" is the same refusal, the section arriving in pieces.
            message = (f"a header section above the {self.max_header_bytes} bytes allowed"
                       if e.error_status_hint == 431 else str(e))
            self.refusal = (e.error_status_hint, message)
            raise
        return event


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol plus deadlines for each request's headers and each answer's delivery,
    the header limits of :class:`BoundedH11Connection`, a limit of open connections per client
    address, its log through a :class:`.log.ClientLog`, and the security headers on its 400 and 431.

    The header timer starts when the connection opens and again after each answer; only the start of a
    new request (a complete header section) stops it. A client that sends nothing, or drips its
    headers, or keeps sending a body the server already answered, is dropped after
    ``header_timeout_s``. The write timer runs while the transport's buffer is above its high-water
    mark (the client is not reading what it asked for): a client that reads nothing for
    ``write_timeout_s`` is dropped. Dropping discards what the client has not read (SO_LINGER 0, so a
    reset): the kernel frees the connection's buffers at once instead of retrying delivery to a client
    that does not read. What the kernel already holds has the same deadline (TCP_USER_TIMEOUT, Linux),
    also after the server has closed the connection: closing with answers unread left the kernel
    holding them, 3.7 MiB a connection, still there 40 s later. ``send_buffer_bytes`` caps the kernel's send buffer
    of each connection (0: the kernel's autotuning, up to ``net.ipv4.tcp_wmem``'s maximum, 4 MiB by
    default), so a client that does not read pins little and fills it quickly.

    Idle connections need no token: without a per-address limit one client could hold all
    ``limit_concurrency`` of them, renewing each as it times out. A connection past
    ``max_per_address`` from one address is answered 503 and closed at once. Behind a reverse proxy
    every connection comes from the proxy's address: set the limit to 0 there and let the proxy limit
    clients. ``open_by_address`` is per server (:func:`uvicorn_config` makes a subclass for each).
    """

    header_timeout_s = 10.0
    write_timeout_s = 10.0
    send_buffer_bytes = 0
    max_per_address = 0
    open_by_address: dict = {}
    client_log: ClientLog | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.conn = BoundedH11Connection(self.config.h11_max_incomplete_event_size)

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._timer, self._write_timer, self._address = None, None, None
        if self.client_log is not None:  # uvicorn's warnings and errors, and its request cycles'
            self.logger = ConnectionLog(self.client_log, self.client[0] if self.client else None)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            if self.send_buffer_bytes:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer_bytes)
            if hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(self.write_timeout_s * 1000))
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
        """uvicorn's answer to a request h11 refuses (400, or 431 for a header section too long), with a
        JSON body and the security headers; the connection is closed."""
        status, detail = self.conn.refusal or (400, msg)
        body = json.dumps({"error": f"malformed HTTP request ({detail.rstrip('.')})"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close"), *_HEADERS]
        for event in (h11.Response(status_code=status, headers=headers, reason=http.HTTPStatus(status).phrase),
                      h11.Data(data=body), h11.EndOfMessage()):
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

    def _cancel_write(self) -> None:
        if getattr(self, "_write_timer", None) is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _expire(self) -> None:
        """The header deadline: close, at once if the client has not taken every answer."""
        self._timer = None
        if _unsent_bytes(self.transport):
            self._drop()
        elif not self.transport.is_closing():
            self.transport.close()  # connection_lost settles the HTTP state

    def _drop(self) -> None:
        """Close now, discarding what the client has not taken (a reset, not a FIN after the data)."""
        self._cancel()
        self._cancel_write()
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()  # connection_lost settles the HTTP state

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._timer is not None and self.cycle is not self._armed_for:
            self._cancel()

    def on_response_complete(self) -> None:
        before = self.cycle
        super().on_response_complete()
        # Also when closing: close() waits for the answer to be read, and a client that never reads it
        # would hold the connection for good.
        if self.cycle is before:
            self._arm()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.write_timeout_s, self._drop)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_write()

    def connection_lost(self, exc) -> None:
        self._cancel()
        self._cancel_write()
        if self._address is not None:
            left = self.open_by_address[self._address] - 1
            if left:
                self.open_by_address[self._address] = left
            else:
                del self.open_by_address[self._address]
            self._address = None
        super().connection_lost(exc)


def _unsent_bytes(transport) -> int:
    """Bytes of answers the client has not taken: in the transport's buffer, and in the kernel's send
    queue (Linux's SIOCOUTQ: sent or not, not yet acknowledged; elsewhere the transport's alone)."""
    n = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    if sock is not None and hasattr(termios, "TIOCOUTQ"):
        with contextlib.suppress(OSError):
            n += struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
    return n


def uvicorn_config(app, settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> uvicorn.Config:
    protocol = type("LipstudyH11", (GuardedH11,), {
        "header_timeout_s": settings.header_timeout_s, "write_timeout_s": settings.write_timeout_s,
        "send_buffer_bytes": settings.send_buffer_bytes, "max_per_address": settings.max_connections_per_address,
        "open_by_address": {}, "client_log": app.state.client_log})
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
